"""The app served in-process on 127.0.0.1 and driven through its API with gradio_client."""

import threading
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from app.handlers import DEFAULT_CLASSES
from app.summaries import escape
from app.main import parse_args
from vlp_core.data.synthworld import get_suite

gradio_client = pytest.importorskip("gradio_client")


def _client(app_server):
    """A fresh client: its own session, so its own gr.State."""
    return gradio_client.Client(app_server.local_url, verbose=False, analytics_enabled=False,
                                download_files=False)


@pytest.fixture
def client(app_server):
    return _client(app_server)


def test_serves_locally_without_a_share_link(app_server):
    assert app_server.server_name == "127.0.0.1" and app_server.share_url is None
    args = parse_args([])
    assert args.host == "127.0.0.1" and not args.share


def test_views_answer_outside_the_queue_and_no_run_history_is_kept(app_server):
    config = app_server.get_config_file()
    queued = {dep["api_name"]: dep["queue"] for dep in config["dependencies"]}
    assert not any(queued[name] for name in ("disa", "disa_mask", "gallop", "ood", "ood_score", "predictions",
                                             "learned", "learned_words"))
    assert all(queued[name] is not False for name in ("load_sample", "upload", "set_classes", "attribution"))
    assert config["run_history"] is False


def test_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/load_sample", "/upload", "/set_classes", "/disa", "/disa_mask", "/gallop", "/ood", "/ood_score",
            "/predictions", "/learned", "/learned_words", "/attribution"} <= set(endpoints)


def test_sliders_on_the_default_image(client):
    *_, summary, table = client.predict("(predicted class)", 0.5, 1.0, 3, api_name="/disa")
    assert "Masked **32** of 64 patches" in summary and "How far to trust the saliency" in summary
    assert "test images, DiSa's saliency for the true class points at the object" in summary
    assert table["headers"][0] == "class" and len(table["data"]) == 8 and table["data"][0][1].endswith(" %")
    verdict, histogram, roc = client.predict("MCM", 1.0, 3.0, api_name="/ood")
    assert "out-of-distribution" in verdict  # 3x chance is out of reach for near-uniform cosines
    assert "`shapes` test images (ID: the TPR)" in verdict and histogram is not None and roc is not None
    verdict, _, _, threshold = client.predict("GL-MCM", 1.0, 3.0, api_name="/ood_score")  # back to 95 % TPR
    assert threshold < 3.0 and "**95.0 %** of 100 `shapes` test images (ID: the TPR)" in verdict
    maps, global_head, local_head, combined, text = client.predict(
        "square", True, 6, 5, 10, 15, 20, api_name="/gallop")
    assert [item["caption"] for item in maps] == [f"prompt {n} · k = 6" for n in range(1, 5)]
    assert "**square**" in text and "top-k on the object" in text and "k random patches" in text
    assert len(combined["confidences"]) == 5


def test_a_huge_mask_seed_is_clamped_with_a_message(client):
    masked, summary, _ = client.predict("(predicted class)", 0.3, 0.5, 1e30, api_name="/disa_mask")
    assert "The mask seed 1e+30 is outside 0 … 4294967295; used 4294967295." in summary and masked is not None


def test_a_sample_switches_the_class_list_unless_kept(client):
    status, *_, classes, sample, upload = client.predict("scenes/test/3", "circle, square", False,
                                                         api_name="/load_sample")
    assert classes == ", ".join(get_suite("scenes").classnames) and "(the `scenes` classes)" in status
    assert upload is None
    status, *_ = client.predict("scenes/test/8", "circle, square", True, api_name="/load_sample")
    assert "classes:** 2 (your own list)" in status


def test_class_names_are_shown_as_text(client):
    status, *_ = client.predict("<b>bold</b>, <B>BOLD</B>, circle", api_name="/set_classes")
    assert "duplicate name(s): &#60;B&#62;BOLD&#60;/B&#62;" in status and "<B>" not in status
    *_, summary, _ = client.predict("<b>bold</b>", 0.3, 0.5, 0, api_name="/disa")
    assert "**&#60;b&#62;bold&#60;/b&#62;**" in summary and "<b>" not in summary


def test_new_sample_and_classes_then_predictions(client):
    status, *_ = client.predict("ood/test/3", "pentagon, flower, Flower, square", True, api_name="/load_sample")
    assert "ood · test/3 · flower" in status and "classes:** 3" in status and "duplicate" in status
    labels = client.predict(2, api_name="/predictions")
    assert len(labels) == 6
    for label in labels:
        confidences = [c["confidence"] for c in label["confidences"]]
        assert len(confidences) == 2 and 0 < sum(confidences) <= 1 + 1e-6
        assert {c["label"] for c in label["confidences"]} <= {"pentagon", "flower", "square"}


def test_bad_input_keeps_serving(client, tmp_path):
    status, *_ = client.predict(" , ", api_name="/set_classes")
    assert "class list is empty" in status
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    status, *_, sample, upload = client.predict(gradio_client.handle_file(str(not_image)), "circle, square",
                                                api_name="/upload")
    assert "not an image" in status and upload is None  # the rejected file leaves the file box
    assert sample is not None  # the sample name stays with the image still shown
    *_, table = client.predict("(predicted class)", 0.3, 0.5, 0, api_name="/disa")
    assert {row[0] for row in table["data"]} <= set(DEFAULT_CLASSES)  # the previous class list is still there
    gray = tmp_path / "gray.png"
    Image.new("L", (300, 200), 90).save(gray)
    status, *_, sample, upload = client.predict(gradio_client.handle_file(str(gray)), "circle, square",
                                                api_name="/upload")
    assert "upload: gray.png" in status and "grayscale" in status and "Resized from 300x200" in status
    assert sample is None and "your own list" in status  # no sample is shown any more; the list is kept


def test_attribution_endpoint(client):
    _, note = client.predict("GalLoP", "circle", "Grad-CAM (penultimate block)", 8, api_name="/attribution")
    assert "GalLoP" in note and "**circle**" in note


def test_two_users_keep_their_own_state(app_server):
    first, second = _client(app_server), _client(app_server)
    first.predict("heart, ring", api_name="/set_classes")
    second.predict("shapes@painted/test/8", ", ".join(["star", "moon", "cloud"]), True, api_name="/load_sample")
    *_, first_table = first.predict("(predicted class)", 0.3, 0.5, 0, api_name="/disa")
    *_, second_table = second.predict("(predicted class)", 0.3, 0.5, 0, api_name="/disa")
    assert sorted(row[0] for row in first_table["data"]) == ["heart", "ring"]
    assert sorted(row[0] for row in second_table["data"]) == ["cloud", "moon", "star"]


def _event(app_server, api_name: str):
    """The function gradio calls for the event named `api_name`."""
    return next(fn for fn in app_server.fns.values() if fn.api_name == api_name).fn


def _new_user_session(app_server):
    """The session a new user's first event gets, as gradio's per-user state hands it out."""
    from gradio.state_holder import SessionState

    state_id = next(key for key, block in app_server.blocks.items() if isinstance(block, gr.State))
    return SessionState(app_server)[state_id]


def test_events_run_on_the_compute_thread(app_server, monkeypatch):
    from app import views
    from app.compute import COMPUTE

    threads, real = [], views.disa_view

    def recording(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "disa_view", recording)
    _, summary, _ = _event(app_server, "disa_mask")(_new_user_session(app_server), "(predicted class)", 0.5, 1.0, 0)
    assert "Masked **32** of 64 patches" in summary
    assert threads == [COMPUTE.run(threading.get_ident)] and threads[0] != threading.get_ident()


def test_new_users_share_the_landing_session_instead_of_copying_it(app_server, monkeypatch):
    """gradio copies a State's initial value per user (and reads a dataclass value field by field
    into its config); the landing session is a value that refers to the whole CLIP through its
    DiSa cache, so every user gets that same session and no tensor is copied."""
    import torch

    def refuse(tensor, memo):
        raise AssertionError(f"a new user's session copied a {tuple(tensor.shape)} tensor")

    monkeypatch.setattr(torch.Tensor, "__deepcopy__", refuse)
    assert _new_user_session(app_server) is _new_user_session(app_server)


def test_a_view_downloads_as_a_png_with_its_python(client):
    files = client.predict("(predicted class)", 0.3, 0.5, 0, api_name="/export_disa")
    names = sorted(Path(file["path"] if isinstance(file, dict) else file).name for file in files["value"])
    assert names == ["disa.png", "redraw_disa.py"]


def test_switching_the_prompts_folder_without_a_restart(client, tmp_path):
    from vlp_core.commands import main as vlp

    status, *_ = client.predict(str(tmp_path / "missing"), api_name="/load_prompts")
    assert "Not loaded:" in status and "No folder" in status
    assert vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--epochs", "1", "--shots", "1",
                "--out", str(tmp_path / "coop"), "--quiet"]) == 0
    try:
        status, *outputs = client.predict(str(tmp_path), api_name="/load_prompts")
        description = next(text for text in outputs if isinstance(text, str) and "| method | prompts |" in text)
        trained = escape(f"trained ({tmp_path / 'coop'})")
        assert f"| CoOp | {trained} |" in description
        assert "shapes base classes, 6 classes (CoOp)" in status  # what the loaded prompts were trained on
    finally:  # back to no checkpoints at all, as the app was started (other tests share it)
        (tmp_path / "none").mkdir()
        status, *_ = client.predict(str(tmp_path / "none"), api_name="/load_prompts")
        assert "no method has trained prompts" in status
