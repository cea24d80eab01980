"""Tests for colourise_tf.config: presets, overrides, serialisation."""

from __future__ import annotations

import ast
import dataclasses
import json
import pathlib

import pytest

from colourise_tf import config as C

EXPECTED_PRESETS = [
    "unet-l1",
    "pix2pix",
    "gorriz-in",
    "gorriz-bn-sn",
    "gorriz-in-sn",
    "gorriz-bn-sn-md",
    "gorriz-ibn-sn-md",
    "gorriz-bn",
    "tarres-vgg16",
    "tarres-resnet50",
    "tarres-seg-shared",
    "tarres-seg-separate",
    "dcgan-sky",
    "dcgan-sky-advanced",
    "partial-mask",
    "resnet-patchgan",
    "unet-pixelgan-sn",
    "unet-pixelgan-bn",
    "tiny",
]


def test_config_module_imports_nothing_from_the_package_or_tensorflow():
    tree = ast.parse(pathlib.Path(C.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"colourise_tf", "tensorflow", "keras", "numpy"}, imported


def test_list_presets_is_exactly_the_table():
    assert C.list_presets() == EXPECTED_PRESETS


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as e:
        C.get_preset("pix3pix")
    assert "pix3pix" in str(e.value)
    for name in EXPECTED_PRESETS:
        assert name in str(e.value)


# (generator, discriminator, image_size, colour space, scales, norm, SN, adversarial, lambda)
SEED_ROWS = {
    "unet-l1": ("unet", "none", 256, "lab", 1, "batch", False, "none", 1.0),
    "pix2pix": ("unet", "patchgan", 256, "lab", 1, "batch", False, "non_saturating", 100.0),
    "gorriz-in": ("unet", "patchgan", 256, "lab", 1, "instance", False, "non_saturating", 100.0),
    "gorriz-bn-sn": ("unet", "patchgan", 256, "lab", 1, "batch", True, "non_saturating", 100.0),
    "gorriz-in-sn": ("unet", "patchgan", 256, "lab", 1, "instance", True, "non_saturating", 100.0),
    "gorriz-bn-sn-md": ("unet", "patchgan", 256, "lab", 3, "batch", True, "non_saturating", 100.0),
    "gorriz-ibn-sn-md": ("unet", "patchgan", 256, "lab", 3, "ibn", True, "non_saturating", 100.0),
    "gorriz-bn": ("unet", "patchgan", 256, "lab", 1, "batch", False, "non_saturating", 100.0),
    "dcgan-sky": ("dcgan", "dcgan", 64, "yuv", 1, "batch", False, "non_saturating", 100.0),
    "dcgan-sky-advanced": ("dcgan-advanced", "dcgan", 64, "yuv", 1, "batch", False, "non_saturating", 100.0),
    "unet-pixelgan-sn": ("unet", "pixelgan", 32, "lab", 1, "batch", False, "non_saturating", 100.0),
    "unet-pixelgan-bn": ("unet", "pixelgan", 32, "lab", 1, "batch", False, "non_saturating", 100.0),
}


@pytest.mark.parametrize("name", sorted(SEED_ROWS))
def test_preset_rows_follow_their_seed(name):
    cfg = C.get_preset(name)
    m, lc = cfg.model, cfg.loss
    gen, disc, size, space, scales, norm, sn, adv, lam = SEED_ROWS[name]
    assert (m.generator, m.discriminator, m.image_size, m.colour_space) == (gen, disc, size, space)
    assert (m.num_scales, m.gen_norm, m.gen_spectral_norm) == (scales, norm, sn)
    assert (lc.adversarial, lc.reconstruction_weight) == (adv, lam)
    assert cfg.name == name and cfg.description


def test_gorriz_presets_say_which_adversarial_loss_and_why():
    for name in EXPECTED_PRESETS:
        if name.startswith("gorriz") or name.startswith("tarres-vgg") or name.startswith("tarres-resnet"):
            d = C.get_preset(name).description
            assert "non-saturating" in d and "least_squares" in d, name


def test_special_presets():
    t = C.get_preset("tarres-vgg16").loss
    assert (t.feature_weight, t.feature_backbone, t.feature_layer) == (1e-5, "vgg16", "block3_conv3")
    assert C.get_preset("tarres-resnet50").loss.feature_backbone == "resnet50"
    for name in ("tarres-seg-shared", "tarres-seg-separate"):
        cfg = C.get_preset(name)
        assert cfg.model.n_classes == 21 and cfg.loss.segmentation_weight > 0
        assert cfg.model.discriminator == "none" and cfg.loss.adversarial == "none"
    assert C.get_preset("dcgan-sky").model.noise_channel
    pm = C.get_preset("partial-mask")
    assert pm.model.mask_channel and pm.loss.mask_weight > 0
    rp = C.get_preset("resnet-patchgan").model
    assert (rp.generator, rp.gen_init, rp.disc_spectral_norm, rp.disc_tanh_head) == (
        "resnet",
        "glorot_uniform",
        True,
        True,
    )
    assert C.get_preset("unet-pixelgan-sn").model.disc_spectral_norm
    assert C.get_preset("unet-pixelgan-bn").model.disc_norm == "batch"
    assert not C.get_preset("unet-pixelgan-bn").model.disc_spectral_norm
    tiny = C.get_preset("tiny")
    assert tiny.model.image_size == 32 and tiny.data.batch_size == 2
    # gorriz-bn is the Table I baseline = pix2pix.
    assert C.get_preset("gorriz-bn").model == C.get_preset("pix2pix").model


def test_overrides_parse_every_type():
    base = C.get_preset("pix2pix")
    cfg = C.apply_overrides(
        base,
        [
            "model.num_scales=3",
            "model.gen_spectral_norm=true",
            "model.gen_filters=8,16,32",
            "model.gen_dropout=0.25",
            "model.gen_norm=ibn",
            "loss.feature_weights=none",
            "loss.reconstruction_weight=1e2",
            "data.eval_split=validation",
            "data.cache=1",
            "train.steps=10",
            "name=my-run",
        ],
    )
    assert cfg.model.num_scales == 3 and cfg.model.gen_spectral_norm is True
    assert cfg.model.gen_filters == (8, 16, 32)
    assert cfg.model.gen_dropout == 0.25 and cfg.model.gen_norm == "ibn"
    assert cfg.loss.feature_weights is None and cfg.loss.reconstruction_weight == 100.0
    assert cfg.data.eval_split == "validation" and cfg.data.cache is True
    assert cfg.train.steps == 10 and cfg.name == "my-run"
    # Frozen: the preset itself is untouched.
    assert base.model.num_scales == 1 and base.train.steps == 100_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.model.num_scales = 2  # type: ignore[misc]


def test_override_errors_name_the_key_and_list_fields():
    base = C.get_preset("tiny")
    with pytest.raises(ValueError) as e:
        C.apply_overrides(base, ["model.num_scale=2"])
    msg = str(e.value)
    assert "model.num_scale" in msg and "num_scales" in msg and "gen_filters" in msg
    with pytest.raises(ValueError, match="sections"):
        C.apply_overrides(base, ["modle.num_scales=2"])
    with pytest.raises(ValueError, match="section.field=value"):
        C.apply_overrides(base, ["train.steps"])
    with pytest.raises(ValueError, match="bool"):
        C.apply_overrides(base, ["model.noise_channel=maybe"])
    with pytest.raises(ValueError, match="model.generator"):
        C.apply_overrides(base, ["model.generator=vae"])
    with pytest.raises(ValueError, match="n_classes"):
        C.apply_overrides(base, ["model.generator=unet-seg-shared"])
    with pytest.raises(ValueError, match="num_scales=1"):
        C.apply_overrides(C.get_preset("dcgan-sky"), ["model.num_scales=3"])


@pytest.mark.parametrize("name", EXPECTED_PRESETS)
def test_dict_round_trip(name):
    cfg = C.get_preset(name)
    d = C.to_dict(cfg)
    json.dumps(d)
    back = C.from_dict(json.loads(json.dumps(d)))
    assert back == cfg
    assert isinstance(back.model.gen_filters, tuple)


def test_save_load_atomic(tmp_path):
    cfg = C.apply_overrides(C.get_preset("gorriz-ibn-sn-md"), ["train.steps=7", "loss.feature_weights=none"])
    path = tmp_path / "run" / "config.json"
    C.save_config(cfg, path)
    assert C.load_config(path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left
    C.save_config(C.get_preset("tiny"), path)  # overwrite in place
    assert C.load_config(path).name == "tiny"


def test_from_dict_rejects_unknown_keys_and_fills_defaults():
    with pytest.raises(ValueError, match="modle"):
        C.from_dict({"name": "x", "modle": {}})
    with pytest.raises(ValueError, match="num_scale"):
        C.from_dict({"name": "x", "model": {"num_scale": 1}})
    cfg = C.from_dict({"name": "x", "model": {"image_size": 64}})
    assert cfg.model.image_size == 64 and cfg.loss == C.LossConfig()


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.steps=abc", "train.steps: cannot parse 'abc' as an integer"),
        ("optim.gen_lr=abc", "optim.gen_lr: cannot parse 'abc' as a number"),
        ("optim.gen_lr=nan", "optim.gen_lr: 'nan' is not a finite float32 number"),
        ("optim.gen_lr=1e39", "optim.gen_lr: '1e39' is not a finite float32 number"),
        ("loss.reconstruction_weight=inf", "loss.reconstruction_weight: 'inf' is not a finite float32 number"),
        ("optim.disc_lr=-1", "optim.disc_lr must be a finite number >= 0"),
        ("optim.beta1=1", r"optim.beta1 must be in \[0, 1\)"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("data.shuffle_buffer=0", "data.shuffle_buffer must be >= 1"),
    ],
)
def test_bad_override_values_name_their_key(override, message):
    with pytest.raises(ValueError, match=message):
        C.apply_overrides(C.get_preset("tiny"), [override])


def test_load_config_names_the_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{bad")
    with pytest.raises(ValueError, match=f"{bad}: not a JSON configuration"):
        C.load_config(bad)
    bad.write_text('{"name": "x", "model": {"no_such_field": 1}}')
    with pytest.raises(ValueError, match=f"{bad}: unknown keys"):
        C.load_config(bad)
