"""Tests for colourise_tf.config: presets, overrides, serialisation."""

from __future__ import annotations

import ast
import dataclasses
import json
import pathlib
import subprocess
import sys

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


def test_config_package_imports_nothing_heavy_and_only_fileio_from_the_package():
    """Every module of colourise_tf.config imports, besides the standard library, only
    its own siblings and colourise_tf.fileio (relative imports included); and importing
    it in a fresh interpreter loads no TensorFlow, Keras or NumPy."""
    package = pathlib.Path(C.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
                assert not roots & {"colourise_tf", "tensorflow", "keras", "numpy"}, (path.name, roots)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    assert (node.module or "").split(".")[0] not in {"colourise_tf", "tensorflow", "keras", "numpy"}
                elif node.level == 1:
                    assert (package / f"{node.module}.py").is_file(), (path.name, node.module)
                else:  # ..x: the package's parent
                    assert node.level == 2 and node.module == "fileio", (path.name, node.level, node.module)
    code = (
        "import sys, colourise_tf.config; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_register_preset_adds_a_function_and_refuses_duplicates():
    from colourise_tf.config import presets

    @C.register_preset("test-only-preset")
    def _factory():
        return dataclasses.replace(C.get_preset("tiny"), description="made by a test")

    try:
        cfg = C.get_preset("test-only-preset")
        assert cfg.name == "test-only-preset" and cfg.description == "made by a test"
        assert cfg.model == C.get_preset("tiny").model
        with pytest.raises(ValueError, match="already registered"):
            C.register_preset("test-only-preset")(_factory)
    finally:
        presets._FACTORIES.pop("test-only-preset", None)
        presets._BUILT.pop("test-only-preset", None)
    assert "test-only-preset" not in C.list_presets()


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
    assert (m.generator.kind, m.discriminator.kind, m.image_size, m.colour_space) == (gen, disc, size, space)
    assert (m.num_scales, m.generator.norm, m.generator.spectral_norm) == (scales, norm, sn)
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
        assert cfg.model.discriminator.kind == "none" and cfg.loss.adversarial == "none"
    assert C.get_preset("dcgan-sky").model.noise_channel
    pm = C.get_preset("partial-mask")
    assert pm.model.mask_channel and pm.loss.mask_weight > 0
    rp = C.get_preset("resnet-patchgan").model
    assert (rp.generator.kind, rp.generator.init, rp.discriminator.spectral_norm, rp.discriminator.tanh_head) == (
        "resnet",
        "glorot_uniform",
        True,
        True,
    )
    assert C.get_preset("unet-pixelgan-sn").model.discriminator.spectral_norm
    assert C.get_preset("unet-pixelgan-bn").model.discriminator.norm == "batch"
    assert not C.get_preset("unet-pixelgan-bn").model.discriminator.spectral_norm
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
            "model.generator.spectral_norm=true",
            "model.generator.filters=8,16,32",
            "model.generator.dropout=0.25",
            "model.generator.norm=ibn",
            "loss.feature_weights=none",
            "loss.reconstruction_weight=1e2",
            "data.eval_split=validation",
            "data.cache=1",
            "train.steps=10",
            "name=my-run",
        ],
    )
    assert cfg.model.num_scales == 3 and cfg.model.generator.spectral_norm is True
    assert cfg.model.generator.filters == (8, 16, 32)
    assert cfg.model.generator.dropout == 0.25 and cfg.model.generator.norm == "ibn"
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
    assert "model.num_scale" in msg and "num_scales" in msg and "generator.filters" in msg
    with pytest.raises(ValueError, match="sections"):
        C.apply_overrides(base, ["modle.num_scales=2"])
    with pytest.raises(ValueError, match="section.field=value"):
        C.apply_overrides(base, ["train.steps"])
    with pytest.raises(ValueError, match="bool"):
        C.apply_overrides(base, ["model.noise_channel=maybe"])
    with pytest.raises(ValueError, match="model.generator"):
        C.apply_overrides(base, ["model.generator.kind=vae"])
    with pytest.raises(ValueError, match="n_classes"):
        C.apply_overrides(base, ["model.generator.kind=unet-seg-shared"])
    with pytest.raises(ValueError, match="num_scales=1"):
        C.apply_overrides(C.get_preset("dcgan-sky"), ["model.num_scales=3"])


@pytest.mark.parametrize("name", EXPECTED_PRESETS)
def test_dict_round_trip(name):
    cfg = C.get_preset(name)
    d = C.to_dict(cfg)
    json.dumps(d)
    back = C.from_dict(json.loads(json.dumps(d)))
    assert back == cfg
    assert isinstance(back.model.generator.filters, tuple)


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


def test_legacy_flat_model_keys_still_load_and_override():
    """Configs and overrides from before the nested generator/discriminator sections."""
    old = {
        "name": "old-run",
        "model": {
            "generator": "resnet",
            "discriminator": "pixelgan",
            "gen_filters": [8, 16],
            "gen_norm": "instance",
            "resnet_blocks": 2,
            "disc_filters": [4, 4, 4, 4],
            "disc_tanh_head": True,
            "num_scales": 1,
        },
    }
    m = C.from_dict(old).model
    assert (m.generator.kind, m.generator.filters, m.generator.norm, m.generator.resnet_blocks) == (
        "resnet",
        (8, 16),
        "instance",
        2,
    )
    assert (m.discriminator.kind, m.discriminator.filters, m.discriminator.tanh_head) == (
        "pixelgan",
        (4, 4, 4, 4),
        True,
    )
    base = C.get_preset("tiny")
    flat = C.apply_overrides(base, ["model.gen_filters=4,8", "model.disc_norm=none", "model.generator=resnet"])
    nested = C.apply_overrides(
        base, ["model.generator.filters=4,8", "model.discriminator.norm=none", "model.generator.kind=resnet"]
    )
    assert flat == nested and nested.model.generator.filters == (4, 8)
    # Every legacy key maps onto an existing nested field.
    fields = {
        f"{part}.{f.name}"
        for part, cls in (("generator", C.GeneratorConfig), ("discriminator", C.DiscriminatorConfig))
        for f in dataclasses.fields(cls)
    }
    assert set(C.LEGACY_MODEL_KEYS.values()) <= fields


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.discriminator.kind=none"], "loss.adversarial='non_saturating' needs a discriminator"),
        (["model.generator.kind=dcgan"], "model.generator.filters for dcgan needs 4 widths"),
        (["model.discriminator.kind=pixelgan"], "model.discriminator.filters for pixelgan needs 4 widths"),
        (["model.discriminator.filters=8"], "model.discriminator.filters for patchgan needs >= 2 widths"),
    ],
)
def test_rules_across_fields_are_checked_when_the_config_is_built(overrides, message):
    with pytest.raises(ValueError, match=message):
        C.apply_overrides(C.get_preset("tiny"), overrides)
    # Both changes at once are fine: the rules see the final config.
    ok = C.apply_overrides(C.get_preset("tiny"), ["model.discriminator.kind=none", "loss.adversarial=none"])
    assert ok.model.discriminator.kind == "none"


def test_segmentation_presets_need_labels_only_for_training():
    cfg = C.get_preset("tarres-seg-shared")
    C.validate(cfg)  # evaluating or exporting needs no labels
    with pytest.raises(ValueError, match="data.segmentation_key"):
        C.validate_for_training(cfg)
    C.validate_for_training(C.apply_overrides(cfg, ["data.segmentation_key=segmentation_mask"]))
