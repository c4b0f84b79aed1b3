"""The view of what prompt learning changed, for one image and class: each `Explainable` method's
zero-shot map beside its learned map and their difference (and whether each points at the
object), the nearest vocabulary words of every learned context vector (CoOp's reading of prompts),
and how alike GalLoP's local prompts are. The computations are vlp_core's
(`ExplainCache.zero_shot_vs_learned`, `vlp_core.methods.interpret`); this only gathers them.
"""

from __future__ import annotations

from app.handlers import Session, grounding, resolve_class
from app.models import AppModels
from vlp_core.engine.metrics import patch_coverage
from vlp_core.methods.interpret import cosine_to_others

SIDES = ("zero_shot", "learned")


def learned_view(models: AppModels, session: Session, class_choice: str | None) -> dict:
    """Returns "maps" {Explainable method: {"class_index", "zero_shot", "learned", "difference"
    (P,) each, "values" ("saliency" or "cosine"), "grounding" {side: `grounding` of that map}
    or None without an object mask}}, "grid", and "local_prompts": GalLoP's per local prompt
    mean cosine with the others, of the context vectors ("context", (Ml,)) and of the text
    features on this class list ("text", (Ml,))."""
    coverage = None if session.mask is None else patch_coverage(session.mask, models.grid)
    maps = {}
    for name, cache in session.explanations.items():
        class_index = resolve_class(session, class_choice, name)
        out = cache.zero_shot_vs_learned(class_index)
        found = None if coverage is None else {side: grounding(out[side], None, coverage) for side in SIDES}
        maps[name] = {"class_index": class_index, "values": out["values"], "grounding": found,
                      **{key: out[key].numpy() for key in (*SIDES, "difference")}}
    local = {"context": models.local_context_cosines, "text": session.local_text_cosines}
    return {"maps": maps, "grid": models.grid,
            "local_prompts": {key: cosine_to_others(value).numpy() for key, value in local.items()}}
