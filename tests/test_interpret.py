"""What prompt learning changed: nearest words, prompt cosines and the zero-shot vs learned maps, by hand."""

import math

import pytest
import torch

from vlp_core.backbone import encode_image_prompted
from vlp_core.methods.interpret import cosine_to_others, nearest_words, prompt_cosines, text_cosines, token_word
from vlp_core.methods.registry import build_method
from vlp_core.methods.saliency import patch_saliency

NAMES = ["circle", "square", "red star"]


def test_nearest_words_by_hand():
    embeddings = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    distances, ids = nearest_words(torch.tensor([[0.9, 0.1], [0.0, 0.0]]), embeddings, k=3)
    assert ids.tolist() == [[1, 0, 2], [0, 1, 2]]
    expected = [[math.sqrt(0.02), math.sqrt(0.82), math.sqrt(0.81 + 3.61)], [0.0, 1.0, 2.0]]
    torch.testing.assert_close(distances, torch.tensor(expected, dtype=torch.float64))


def test_a_context_vector_at_a_words_embedding_reads_as_that_word(tiny):
    tokenizer, table = tiny.tokenizer, tiny.model.token_embedding.weight
    photo = int(tokenizer(["photo"])[0][1])  # [SOT, photo, EOT]
    distances, ids = nearest_words(table[[photo]], table, k=1)
    assert ids.item() == photo and distances.item() == 0.0 and token_word(tokenizer, photo) == "photo"


def test_prompt_cosines_by_hand():
    cosines = prompt_cosines(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    half = 1 / math.sqrt(2)
    torch.testing.assert_close(cosines, torch.tensor([[1, half, 0], [half, 1, half], [0, half, 1]],
                                                     dtype=torch.float64))
    torch.testing.assert_close(cosine_to_others(cosines), torch.tensor([half / 2, half, half / 2],
                                                                       dtype=torch.float64))
    same = prompt_cosines(torch.ones(4, 2, 3))  # four identical prompts of 2 x 3: not diverged at all
    torch.testing.assert_close(cosine_to_others(same), torch.ones(4, dtype=torch.float64))


def test_text_cosines_average_over_classes_by_hand():
    features = torch.tensor([[[2.0, 0.0], [0.0, 3.0]],  # class 0: the two prompts orthogonal
                             [[1.0, 0.0], [5.0, 0.0]]])  # class 1: the same direction
    torch.testing.assert_close(text_cosines(features), torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64))


def test_text_contexts(tiny):
    coop, gallop = build_method("coop", tiny), build_method("gallop", tiny)
    assert list(coop.text_contexts()) == ["context"] and coop.text_contexts()["context"] is coop.text_ctx
    contexts = gallop.text_contexts()
    assert list(contexts) == ["global 1", "global 2", "global 3", "global 4", "local 1", "local 2", "local 3", "local 4"]
    assert torch.equal(contexts["local 2"], gallop.local_prompts[1])
    assert build_method("zeroshot", tiny).text_contexts() == {}


def test_disa_zero_shot_vs_learned_saliency(tiny, images):
    disa = build_method("disa", tiny).eval()
    disa.set_classes(NAMES)
    with torch.no_grad():
        cache = disa.explain_cache(images[:1])
        maps = cache.zero_shot_vs_learned(2)
        prompted = encode_image_prompted(tiny.model, images[:1], disa.vision_ctx, disa.vision_deep, patches=True)
        learned = patch_saliency(prompted.patches, disa.text_features()[[2]], disa.config.saliency_tau)[0]
    torch.testing.assert_close(maps["zero_shot"], cache.explain(2)["saliency"])  # the mask's own saliency
    torch.testing.assert_close(maps["learned"], learned, rtol=1e-5, atol=1e-7)
    assert maps["values"] == "saliency" and float(maps["learned"].sum()) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(maps["difference"], maps["learned"] - maps["zero_shot"])
    assert abs(float(maps["difference"].sum())) < 1e-5


def test_gallop_untrained_changes_nothing_and_learned_is_the_mean_local_map(tiny, images):
    gallop = build_method("gallop", tiny).eval()
    gallop.set_classes(NAMES)
    with torch.no_grad():
        maps = gallop.explain_cache(images[:1]).zero_shot_vs_learned(1)
    assert gallop.zero_shot_template == "a photo of a {}" and maps["values"] == "cosine"
    torch.testing.assert_close(maps["learned"], maps["zero_shot"], rtol=1e-4, atol=1e-5)  # its starting point
    with torch.no_grad():
        gallop.local_prompts.add_(0.3 * torch.randn(gallop.local_prompts.shape, generator=torch.Generator().manual_seed(0)))
        cache = gallop.explain_cache(images[:1])
        maps = cache.zero_shot_vs_learned(1)
    torch.testing.assert_close(maps["learned"], cache.explain(1)["maps"].mean(0))
    assert (maps["difference"] - (maps["learned"] - maps["zero_shot"])).abs().max() == 0
    assert maps["difference"].abs().max() > 1e-3  # learned prompts moved the map
