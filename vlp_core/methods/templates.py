"""Text templates: the single CLIP prompt, CoOp's per-dataset prompts and the ImageNet ensembles.

`IMAGENET_TEMPLATES` is the list PromptSRC uses for its frozen text features (its
`trainers/imagenet_templates.py`, IMAGENET_TEMPLATES): 60 of the 80 templates of CLIP's
"Prompt Engineering for ImageNet" notebook; `IMAGENET_80_TEMPLATES` are all 80, as open_clip ships
them (`open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES`). Order as in PromptSRC.

`COOP_TEMPLATES` is the hand-made prompt per dataset that CoOp's zero-shot CLIP uses (its
`trainers/zsclip.py`), which gives the CLIP rows of the CoOp, PromptSRC and GalLoP tables.
"""

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

SINGLE_TEMPLATE = "a photo of a {}."

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)

IMAGENET_80_TEMPLATES: tuple[str, ...] = tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "single": (SINGLE_TEMPLATE,),
    "ensemble": IMAGENET_TEMPLATES,
    "ensemble80": IMAGENET_80_TEMPLATES,
}

COOP_TEMPLATES: dict[str, str] = {  # keyed by the dataset names of `vlp_core.data.coop`
    "ImageNet": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "OxfordPets": "a photo of a {}, a type of pet.",
    "StanfordCars": "a photo of a {}.",
    "Flowers102": "a photo of a {}, a type of flower.",
    "Food101": "a photo of {}, a type of food.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "SUN397": "a photo of a {}.",
    "DTD": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet-V2": "a photo of a {}.",
    "ImageNet-Sketch": "a photo of a {}.",
    "ImageNet-A": "a photo of a {}.",
    "ImageNet-R": "a photo of a {}.",
}


def templates_of(choice: str) -> tuple[str, ...]:
    """The templates a zero-shot `choice` names: a set of `TEMPLATE_SETS`, or one template with "{}"."""
    if choice in TEMPLATE_SETS:
        return TEMPLATE_SETS[choice]
    if choice.count("{}") == 1:
        return (choice,)
    raise ValueError(f"template must be one of {', '.join(TEMPLATE_SETS)} or a text with one {{}} for the "
                     f"class name (e.g. 'a centered satellite photo of {{}}.'), got {choice!r}")
