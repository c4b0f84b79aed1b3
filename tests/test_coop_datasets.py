"""CoOp-format real datasets read from tiny fake copies (real 8x8 image files, real split files)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import IMAGENET, PETS_TRAIN, image, write_imagenet, write_pets
from vlp_core.data.base import ClassificationData, Datum, FirstAppearanceOrder
from vlp_core.data.coop import (
    DatasetContentError,
    DatasetNotFoundError,
    ImageReadError,
    get_dataset,
    get_ood_set,
    list_datasets,
)
from vlp_core.data.fewshot import base_novel_labels, base_novel_split, sample_few_shot
from vlp_core.data.fewshot_cache import few_shot_path, few_shot_split


@pytest.fixture
def pets_root(tmp_path: Path) -> Path:
    """oxford_pets/ with a split_zhou file whose classes appear out of label order."""
    return write_pets(tmp_path)


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    """imagenet/ (4 classes, classnames.txt unsorted) plus -V2, -Sketch and -R on some of its classes."""
    return write_imagenet(tmp_path)


@pytest.fixture
def fgvc_root(tmp_path: Path) -> Path:
    """fgvc_aircraft/ with variants.txt out of alphabetical order."""
    folder = tmp_path / "fgvc_aircraft"
    folder.mkdir()
    (folder / "variants.txt").write_text("Boeing 737-200\nA320\nF/A-18\n")
    splits = {"train": ["0001 F/A-18", "0002 Boeing 737-200", "0003 A320", "0004 F/A-18"],
              "val": ["0005 A320"], "test": ["0006 Boeing 737-200", "0007 F/A-18"]}
    for split, lines in splits.items():
        (folder / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            image(folder / "images" / f"{line.split()[0]}.jpg")
    return tmp_path


def test_split_zhou_reads_labels_names_and_counts(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    assert isinstance(data, ClassificationData)
    assert data.classnames == ["abyssinian", "american bulldog", "yorkshire terrier"]
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [11, 6, 3]
    assert [d.label for d in data.split("train")] == PETS_TRAIN
    assert data.split("test")[0] == Datum("yorkshire_terrier/test_0.jpg", 2, "yorkshire terrier")
    assert all(d.classname == data.classnames[d.label] for s in ("train", "val", "test") for d in data.split(s))
    image = data.load_image(data.split("train")[0])
    assert image.mode == "RGB" and image.size == (8, 8) and data.load_mask(data.split("train")[0]) is None


def test_names_and_folders_match_case_insensitively(pets_root, imagenet_root):
    assert get_dataset("oxford_pets", pets_root).name == "OxfordPets"
    assert get_dataset("OXFORDPETS", pets_root).name == "OxfordPets"
    assert get_dataset("imagenet_r", imagenet_root).name == "ImageNet-R"
    assert get_dataset("imagenet-rendition", imagenet_root).name == "ImageNet-R"
    assert len(list_datasets("benchmark")) == 11 and len(list_datasets("imagenet_shift")) == 4
    with pytest.raises(KeyError, match="OxfordPets.*ImageNet-R"):
        get_dataset("pets37", pets_root)


def test_fgvc_labels_follow_variants_file_order(fgvc_root):
    data = get_dataset("FGVCAircraft", fgvc_root)
    assert data.classnames == ["Boeing 737-200", "A320", "F/A-18"]
    assert [(d.key, d.label) for d in data.split("train")] == [
        ("0001.jpg", 2), ("0002.jpg", 0), ("0003.jpg", 1), ("0004.jpg", 2)]
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [4, 1, 2]
    assert data.split("test")[1].classname == "F/A-18"


def test_imagenet_labels_by_sorted_wnid_and_no_val(imagenet_root):
    data = get_dataset("ImageNet", imagenet_root)
    assert data.classnames == ["tench", "goldfish", "tiger cat", "great white shark"]
    train, test = data.split("train"), data.split("test")
    assert len(train) == 8 and len(test) == 4 and data.split("val") == []
    assert Counter(d.label for d in train) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert test[1] == Datum("val/n02000000/v.JPEG", 1, "goldfish")
    assert train[1].key == "train/n01000000/1.JPEG"
    assert abs(data.load_image(train[1]).getpixel((0, 0))[0] - 150) <= 4  # that file's red, not 0.JPEG's 50


def test_imagenet_shifts(imagenet_root):
    sketch = get_dataset("ImageNet-Sketch", imagenet_root)  # no classnames.txt of its own: ImageNet's
    assert len(sketch.classnames) == 4 and sketch.split("train") == [] and sketch.split("val") == []
    assert [(d.label, d.classname) for d in sketch.split("test")] == [
        (1, "goldfish"), (1, "goldfish"), (3, "great white shark")]
    v2 = get_dataset("ImageNet-V2", imagenet_root)
    assert [(d.key, d.label) for d in v2.split("test")] == [("0/a.jpeg", 0), ("3/b.jpeg", 3)]
    rendition = get_dataset("ImageNet-R", imagenet_root)  # scored over its own classes
    assert rendition.classnames == ["goldfish", "great white shark"]
    assert rendition.imagenet_labels == [1, 3]
    assert [d.label for d in rendition.split("test")] == [0, 0, 1]


def test_ood_folder_is_unlabelled_test_split(tmp_path):
    folder = tmp_path / "iNaturalist"
    image(folder / "images" / "a.jpg")
    image(folder / "images" / "b.jpg")
    image(folder / "images" / "sub" / "c.png")
    image(folder / "images" / ".hidden.jpg")
    (folder / "images" / "notes.txt").write_text("not an image")
    data = get_ood_set("iNaturalist", tmp_path)
    assert data.classnames == [] and data.split("train") == []
    assert [(d.key, d.label) for d in data.split("test")] == [
        ("images/a.jpg", -1), ("images/b.jpg", -1), ("images/sub/c.png", -1)]
    assert [d.key for d in get_ood_set("iNaturalist/images/sub", tmp_path).split("test")] == ["c.png"]


def test_few_shot_equals_sample_few_shot_and_persists_at_coop_path(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    few_train, few_val = few_shot_split(data, shots=4, seed=1, cache_dir=data.folder)
    assert (few_train, few_val) == sample_few_shot(data.split("train"), data.split("val"), 4, 1)
    assert Counter(d.label for d in few_train) == {2: 4, 0: 3, 1: 2}  # label 1 has only 2: keeps both
    assert Counter(d.label for d in few_val) == {0: 2, 1: 2, 2: 2}  # min(K, 4) = 4 > 2 per class
    path = pets_root / "oxford_pets" / "split_fewshot" / "shot_4-seed_1.json"
    content = json.loads(path.read_text())
    assert {k: content[k] for k in ("dataset", "shots", "seed", "sampling", "train_on_trainval")} == {
        "dataset": "OxfordPets", "shots": 4, "seed": 1, "sampling": "per_class", "train_on_trainval": False}
    assert content["train"][0] == {"key": few_train[0].key, "label": few_train[0].label,
                                   "classname": few_train[0].classname, "domain": ""}
    assert [d["key"] for d in content["val"]] == [d.key for d in few_val]
    reloaded = get_dataset("OxfordPets", pets_root)
    assert few_shot_split(reloaded, 4, 1, reloaded.folder) == (few_train, few_val)
    content["train"] = content["train"][::-1]  # the file, not a new draw, decides
    path.write_text(json.dumps(content))
    assert few_shot_split(reloaded, 4, 1, reloaded.folder)[0] == few_train[::-1]


def test_stale_few_shot_file_is_refused(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    few_shot_split(data, 1, 2, data.folder)
    path = few_shot_path(data.folder, 1, 2)
    content = json.loads(path.read_text())
    content["train"][0]["key"] = "gone.jpg"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="gone.jpg"):
        few_shot_split(data, 1, 2, data.folder)


def test_stratified_total_samples_k_times_c_in_class_proportion(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    few_train, few_val = few_shot_split(data, 2, 1, data.folder, sampling="stratified_total")
    # 6 = 2 shots x 3 classes over counts {2: 6, 0: 3, 1: 2} of 11: 3.27, 1.64, 1.09 -> 3, 1 + 1, 1
    assert Counter(d.label for d in few_train) == {2: 3, 0: 2, 1: 1}
    assert len(set(few_train)) == 6 and set(few_train) <= set(data.split("train"))
    assert few_val == sample_few_shot(data.split("train"), data.split("val"), 2, 1)[1]
    assert (data.folder / "split_fewshot" / "shot_2-seed_1-stratified_total.json").exists()


def test_fgvc_train_on_trainval_has_no_val(fgvc_root):
    data = get_dataset("FGVCAircraft", fgvc_root)
    few_train, few_val = few_shot_split(data, 2, 1, data.folder, train_on_trainval=True)
    assert few_val == []
    assert few_train == sample_few_shot(data.split("train") + data.split("val"), [], 2, 1)[0]
    assert Counter(d.label for d in few_train) == {2: 2, 0: 1, 1: 2}  # A320: one train + one val image
    assert few_shot_path(data.folder, 2, 1, train_on_trainval=True).name == "shot_2-seed_1-trainval.json"
    assert few_shot_path(data.folder, 2, 1, train_on_trainval=True).exists()


def test_base_novel_split_of_a_real_format_dataset(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    few_train, _ = few_shot_split(data, 4, 1, cache_dir=None)
    base, novel = base_novel_labels(few_train)
    assert (base, novel) == ([0, 1], [2])
    assert [data.classnames[label] for label in novel] == ["yorkshire terrier"]
    test_base, test_novel = base_novel_split(data.split("test"), base, novel)
    assert [(d.label, d.classname) for d in test_base] == [(1, "american bulldog"), (0, "abyssinian")]
    assert test_novel == [Datum("yorkshire_terrier/test_0.jpg", 0, "yorkshire terrier")]
    train_base, _ = base_novel_split(few_train, base, novel)
    assert sorted({d.label for d in train_base}) == [0, 1]
    assert not (data.folder / "split_fewshot").exists()  # cache_dir=None persists nothing


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        get_dataset("OxfordPets", tmp_path / "nowhere")
    message = str(error.value)
    assert f"expected {tmp_path / 'nowhere' / 'oxford_pets'}," in message
    assert "split_zhou_OxfordPets.json" in message and "images/" in message and "--data-root" in message
    assert isinstance(error.value, FileNotFoundError)


def test_missing_split_file_names_it(tmp_path):
    (tmp_path / "dtd" / "images").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="split_zhou_DescribableTextures.json") as error:
        get_dataset("DTD", tmp_path)
    assert error.value.path == tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    assert str(error.value.path) in str(error.value)


def test_missing_imagenet_train_folder_fails_only_for_train(imagenet_root):
    for wnid in IMAGENET:
        for file in (imagenet_root / "imagenet" / "images" / "train" / wnid).iterdir():
            file.unlink()
        (imagenet_root / "imagenet" / "images" / "train" / wnid).rmdir()
    (imagenet_root / "imagenet" / "images" / "train").rmdir()
    data = get_dataset("ImageNet", imagenet_root)
    assert len(data.split("test")) == 4
    with pytest.raises(DatasetNotFoundError) as error:
        data.split("train")
    assert error.value.path == imagenet_root / "imagenet" / "images" / "train"
    assert "classnames.txt" in str(error.value)


def test_unreadable_and_truncated_images_name_the_file(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    garbage = data.image_root / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError, match="garbage.jpg"):
        data.load_image(Datum("garbage.jpg", 0, "abyssinian"))
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    whole = data.image_root / "whole.jpg"
    Image.fromarray(noise).save(whole)
    (data.image_root / "cut.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(OSError, match="cut.jpg"):
        data.load_image(Datum("cut.jpg", 0, "abyssinian"))


def _palette_image() -> Image.Image:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 40, 50, 60])
    return image


@pytest.mark.parametrize("image, rgb", [
    (Image.new("L", (8, 8), 77), (77, 77, 77)),
    (Image.new("RGBA", (8, 8), (10, 20, 30, 128)), (10, 20, 30)),
    (_palette_image(), (40, 50, 60)),
])
def test_grayscale_rgba_palette_load_as_rgb(pets_root, image, rgb):
    data = get_dataset("OxfordPets", pets_root)
    image.save(data.image_root / f"{image.mode}.png")
    loaded = data.load_image(Datum(f"{image.mode}.png", 0, "abyssinian"))
    assert loaded.mode == "RGB" and loaded.size == (8, 8) and loaded.getpixel((3, 3)) == rgb


def test_get_dataset_sun_never_means_the_ood_set(tmp_path):
    with pytest.raises(KeyError, match="did you mean SUN397\\? SUN is an OOD set"):
        get_dataset("sun", tmp_path)
    with pytest.raises(KeyError, match="iNaturalist is an OOD set"):
        get_dataset("inaturalist", tmp_path)
    for folder in ("SUN", "dtd/images", "my_folder"):
        (tmp_path / folder).mkdir(parents=True)
    assert get_ood_set("sun", tmp_path).image_root == tmp_path / "SUN"
    assert get_ood_set("Textures", tmp_path).image_root == tmp_path / "dtd" / "images"  # the table's path
    assert get_ood_set("my_folder", tmp_path).name == "my_folder"


def test_check_names_every_problem_with_paths(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    missing = [data.image_root / d.key for d in data.split("test")[:2]]
    for path in missing:
        path.unlink()
    with pytest.raises(DatasetContentError) as error:
        data.check(("train", "test"))
    message = str(error.value)
    assert "3 classes found where OxfordPets has 37" in message
    assert "2 of the 3 listed test images do not exist" in message and str(missing[0]) in message
    assert "split_zhou_OxfordPets.json" in message  # the layout it expected


def test_check_finds_empty_splits_and_classes_without_images(imagenet_root, tmp_path, monkeypatch):
    import dataclasses

    from vlp_core.data import coop

    for name in ("imagenet", "imagenetv2"):  # the fake ImageNet has 4 classes, not 1000
        monkeypatch.setitem(coop._BY_NAME, name, dataclasses.replace(coop._BY_NAME[name], num_classes=4))
    get_dataset("ImageNet", imagenet_root).check()
    for file in (imagenet_root / "imagenet" / "images" / "train" / "n03000000").iterdir():
        file.unlink()
    with pytest.raises(DatasetContentError, match="1 classes have no training images \\(e.g. tiger cat\\)"):
        get_dataset("ImageNet", imagenet_root).check()
    v2 = imagenet_root / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    for folder in ("0", "3"):  # wnid folders instead of 0..999: nothing is read
        (v2 / folder).rename(v2 / f"n0{folder}000000")
    with pytest.raises(DatasetContentError, match=f"no images in the test split under {v2}"):
        get_dataset("ImageNet-V2", imagenet_root).check(("test",))
    (tmp_path / "Places").mkdir()
    with pytest.raises(DatasetContentError, match="no images in the test split"):
        get_ood_set("Places", tmp_path).check(("test",))


def test_first_appearance_order_relabels_every_split(pets_root):
    data = get_dataset("OxfordPets", pets_root)
    view = FirstAppearanceOrder(data)  # train labels appear as 2, 0, 1
    assert view.classnames == ["yorkshire terrier", "abyssinian", "american bulldog"]
    assert [d.label for d in view.split("train")] == [{2: 0, 0: 1, 1: 2}[label] for label in PETS_TRAIN]
    assert all(d.classname == view.classnames[d.label] for d in view.split("test"))
    assert view.load_image(view.split("test")[0]).size == (8, 8) and view.folder == data.folder
    few_train, _ = few_shot_split(view, 2, 1, view.folder, class_order="first_appearance")
    assert few_shot_path(view.folder, 2, 1, class_order="first_appearance").name == "shot_2-seed_1-first_appearance.json"
    assert {d.label for d in few_train} == {0, 1, 2} and set(few_train) <= set(view.split("train"))
