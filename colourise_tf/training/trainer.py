"""The GAN trainer: one ``tf.function`` step that updates D once and G once.

Data flow of one step (all on the device, inside ``strategy.run``)::

    uint8 RGB batch -> colour.rgb_to_model (float32 Lab or YUV, [-1, 1])
      -> G(L [+ noise] [+ mask + hints]) -> chroma
      -> D_n(L, real chroma [, mask]) and D_n(L, fake chroma [, mask]), n = 1..scales
      -> losses (float32) -> Adam(G) and Adam(D), each on its own variables

Batch convention: ``data.batch_size`` is the GLOBAL batch, split over the replicas
(consecutive slices; when it does not divide, the first replicas take one image
more, as ``tf.distribute`` splits a batch). Every loss is a mean over equal-sized
terms per image (pixels, patches), so each replica weights its local mean by its
share of the global batch, ``n_local / data.batch_size``: the gradients the
optimisers sum over replicas, and the metrics summed over replicas, are exactly
those of the mean over the global batch, for any replica count and uneven splits.
(Batch-norm statistics are per replica, as in Keras' default batch norm.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import keras
import tensorflow as tf

from colourise_tf import colour, inference, losses
from colourise_tf import data as data_lib
from colourise_tf.config import ExperimentConfig
from colourise_tf.models import build_models
from colourise_tf.ops import cpu_kernels

from .optim import FusedAdam


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


@dataclasses.dataclass
class _Forward:
    """One replica's forward pass: targets, G's outputs and D's logits (float32)."""

    grey: tf.Tensor  # L (or Y), network range
    chroma: tf.Tensor  # the chroma target (mask * ab for loss.mask_target=partial)
    pred: tf.Tensor  # G's first output: chroma, or 2 channels per class (unet-seg-shared)
    fake: tf.Tensor  # the generated chroma D judges
    seg_logits: tf.Tensor | None  # G's segmentation head (unet-seg-separate)
    seg: tf.Tensor | None  # per-pixel class labels, when the data has them
    extras: dict  # "mask" and "hints" of a mask-channel model
    partial: bool  # loss.mask_target=partial
    d_real: list = dataclasses.field(default_factory=list)  # D's logits per scale, real pair
    d_fake: list = dataclasses.field(default_factory=list)  # and fake pair


def _output_branches(model: keras.Model) -> tuple[set[int], set[int]]:
    """For a two-output functional model: ids of the trainable variables that only the
    first output depends on, and those only the second depends on (found through the
    model's graph); two empty sets for a one-output model."""
    if len(model.outputs) != 2:
        return set(), set()
    first, second = ({id(v) for v in keras.Model(model.inputs, out).trainable_variables} for out in model.outputs)
    return first - second, second - first


class GANTrainer:
    """Builds models, optimisers and the distributed train step for one experiment.

    Args:
        cfg: the resolved experiment configuration.
        strategy: the ``tf.distribute`` strategy (models and optimisers are created in
            its scope).
        precision: the concrete Keras policy name already set globally
            (``float32``, ``mixed_bfloat16`` or ``mixed_float16``).
        feature_model: optional prebuilt feature-reconstruction loss callable
            (tests inject one built with ``weights=None``).
        jit_compile: compile the step with XLA; defaults to ``cfg.train.xla``.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        strategy: tf.distribute.Strategy | None = None,
        precision: str = "float32",
        feature_model=None,
        jit_compile: bool | None = None,
    ):
        self.cfg = cfg
        self.jit_compile = cfg.train.xla if jit_compile is None else jit_compile
        self.strategy = strategy or tf.distribute.get_strategy()
        self.precision = precision
        self.replicas = self.strategy.num_replicas_in_sync
        check_batch_split(cfg.data.batch_size, self.replicas)
        self.spec = inference.ModelSpec.from_model_config(cfg.model)
        m, lc, oc = cfg.model, cfg.loss, cfg.optim
        # config.validate: an adversarial loss always comes with a discriminator.
        self.use_gan = lc.adversarial != "none"
        if self.use_gan:
            self.gen_adv_loss, self.disc_adv_loss = losses.get_adversarial_losses(lc.adversarial)
        self.reconstruction = {
            "l1": losses.l1_loss,
            "smooth_l1": functools.partial(losses.smooth_l1_loss, delta=lc.smooth_l1_delta),
        }[lc.reconstruction]

        with self.strategy.scope():
            self.generator, self.discriminator = build_models(cfg)
            if not self.use_gan:
                self.discriminator = None
            self.g_opt = self._optimizer(oc.gen_lr)
            self.d_opt = self._optimizer(oc.disc_lr) if self.discriminator is not None else None
            self.g_opt.build(self.generator.trainable_variables)
            if self.d_opt is not None:
                self.d_opt.build(self.discriminator.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.feature_loss = None
            if lc.feature_weight > 0:
                self.feature_loss = feature_model or _feature_loss(lc)
        self._train_fns: dict[int, Any] = {}
        self._loop_fns: dict[tuple, Any] = {}
        self._replica_fns: dict[int, Any] = {}
        self.seg_pretrain_steps = cfg.train.seg_pretrain_steps
        if m.generator.kind != "unet-seg-separate":
            self.seg_pretrain_steps = 0
        # A two-output generator (unet-seg-separate): the variables only the colour output
        # uses (left out in stage 1) and only the segmentation output uses (frozen in stage 2).
        self._colour_branch, self._seg_branch = _output_branches(self.generator)

    # ------------------------------------------------------------------ setup
    def _optimizer(self, lr: float) -> keras.optimizers.Optimizer:
        oc = self.cfg.optim
        opt = FusedAdam(learning_rate=lr, beta_1=oc.beta1, beta_2=oc.beta2)
        if self.precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def set_learning_rates_from_config(self) -> None:
        """Sets both optimisers' learning rates to the config's.

        A checkpoint restores the learning rates it was saved with; after a resume
        this makes ``optim.gen_lr`` / ``optim.disc_lr`` of the new config apply.
        """
        oc = self.cfg.optim
        for opt, lr in ((self.g_opt, oc.gen_lr), (self.d_opt, oc.disc_lr)):
            if opt is not None:
                getattr(opt, "inner_optimizer", opt).learning_rate = lr  # assigns the variable

    def all_weights_finite(self) -> bool:
        """Whether every model and optimiser variable is finite (checked before saving)."""
        variables = list(self.generator.variables) + list(self.g_opt.variables)
        if self.discriminator is not None:
            variables += list(self.discriminator.variables) + list(self.d_opt.variables)
        checks = [tf.reduce_all(tf.math.is_finite(v)) for v in variables if tf.as_dtype(v.dtype).is_floating]
        return bool(tf.reduce_all(tf.stack(checks)).numpy()) if checks else True

    def checkpoint_objects(self) -> dict[str, Any]:
        """The trackables a checkpoint holds (models, optimisers, step)."""
        objs = {"generator": self.generator, "g_opt": self.g_opt, "step": self.step}
        if self.discriminator is not None:
            objs.update(discriminator=self.discriminator, d_opt=self.d_opt)
        return objs

    # ------------------------------------------------------------------ inputs
    def generator_inputs(self, grey, chroma, batch, step, replica=0) -> tuple[tf.Tensor, dict]:
        """Assembles G's single input tensor in the documented channel order.

        Order: L, then noise (the DCGAN report), then mask and hint chroma (the IMPA project).

        Args:
            grey, chroma: network-range tensors from :func:`colour.rgb_to_model`.
            batch: the input dict (``"mask"`` is read when the model has a mask channel).
            step: int64 scalar; with ``replica`` it seeds the noise channel, so a fresh
                N(0, 1) channel is drawn every step, reproducibly.
            replica: replica id within the sync group.

        Returns:
            ``(input_tensor, extras)`` where extras holds ``mask`` and ``hints``.
        """
        m = self.cfg.model
        seed = tf.stack(
            [
                tf.cast(self.cfg.train.seed, tf.int64) * 1000003 + tf.cast(replica, tf.int64),
                tf.cast(step, tf.int64),
            ]
        )
        extras = {}
        g_hints = None
        if m.mask_channel:
            extras["mask"] = tf.cast(batch["mask"], tf.float32)
            extras["hints"] = chroma * extras["mask"]
            # loss.mask_target=partial (the IMPA project): G sees the mask only, no colours.
            partial = self.cfg.loss.mask_target == "partial"
            g_hints = tf.zeros_like(extras["hints"]) if partial else extras["hints"]
        g_in = inference.generator_input(grey, self.spec, mask_small=extras.get("mask"), hints_small=g_hints, seed=seed)
        return g_in, extras

    # ------------------------------------------------------------------ step
    def _batch_share(self, batch) -> tf.Tensor:
        """This replica's share of the global batch, ``n_local / data.batch_size``."""
        n_local = tf.cast(tf.shape(batch["image"])[0], tf.float32)
        return n_local / float(self.cfg.data.batch_size)

    def stage(self) -> int:
        """1 while unet-seg-separate pre-trains segmentation (``train.seg_pretrain_steps``), else 2."""
        if self.seg_pretrain_steps and int(self.step.numpy()) < self.seg_pretrain_steps:
            return 1
        return 2

    def _generator_variables(self, stage: int) -> list:
        """G's variables trained in ``stage``: stage 1 leaves the colour decoder out (it has
        no loss yet), stage 2 of a two-stage run freezes the segmentation decoder."""
        variables = self.generator.trainable_variables
        if not self.seg_pretrain_steps:
            return variables
        skip = self._colour_branch if stage == 1 else self._seg_branch
        return [v for v in variables if id(v) not in skip]

    def _forward(self, batch, step) -> _Forward:
        """Both networks on this replica's batch: G once, D on the real and on the fake pair."""
        cfg = self.cfg
        images = batch["image"]
        if "crop_size" in batch:  # prepared shards' windows, resized here (data.resize_on_device)
            images = data_lib.resize_crops(images, batch["crop_size"], cfg.model.image_size)
        grey, chroma = colour.rgb_to_model(images, cfg.model.colour_space)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        g_in, extras = self.generator_inputs(grey, chroma, batch, step, replica)
        partial = "mask" in extras and cfg.loss.mask_target == "partial"
        if partial:  # the IMPA project's target: the colours inside the mask, grey (ab = 0) elsewhere
            chroma = extras["hints"]
        seg = batch.get("segmentation")
        outputs = [tf.cast(o, tf.float32) for o in _as_list(self.generator(g_in, training=True))]
        pred = outputs[0]
        # Per-class chroma (unet-seg-shared: 2 channels per class): the labelled class's pair.
        fake = losses.select_class_chroma(pred, seg) if pred.shape[-1] > 2 else pred
        fwd = _Forward(grey, chroma, pred, fake, outputs[1] if len(outputs) > 1 else None, seg, extras, partial)
        if self.use_gan:
            d_side = [extras["mask"]] if "mask" in extras else []  # D sees the mask too
            real_in = tf.concat([grey, chroma] + d_side, axis=-1)
            fake_in = tf.concat([grey, fake] + d_side, axis=-1)
            fwd.d_real = [tf.cast(x, tf.float32) for x in _as_list(self.discriminator(real_in, training=True))]
            fwd.d_fake = [tf.cast(x, tf.float32) for x in _as_list(self.discriminator(fake_in, training=True))]
        return fwd

    def _generator_terms(self, fwd: _Forward) -> dict[str, tf.Tensor]:
        """G's weighted loss terms, by name (``loss/g_<name>`` in the metrics)."""
        cfg, lc = self.cfg, self.cfg.loss
        terms: dict[str, tf.Tensor] = {}
        if fwd.pred.shape[-1] > 2:  # per-class chroma: the per-class L1 (Tarrés 2021 S4.3.1)
            seg_l1 = losses.segmentation_l1_loss(fwd.pred, fwd.chroma, fwd.seg, cfg.model.n_classes)
            terms["segmentation"] = lc.segmentation_weight * seg_l1
        if fwd.seg_logits is not None:  # a segmentation head (Tarrés 2021 S4.3.2)
            ce = tf.keras.losses.sparse_categorical_crossentropy(fwd.seg, fwd.seg_logits, from_logits=True)
            terms["segmentation"] = lc.segmentation_weight * tf.reduce_mean(ce)
        if lc.reconstruction_weight > 0:
            terms["reconstruction"] = lc.reconstruction_weight * self.reconstruction(fwd.chroma, fwd.fake)
        if self.feature_loss is not None:
            space = cfg.model.colour_space
            rgb_fake = colour.model_to_rgb(fwd.grey, fwd.fake, space)
            rgb_real = colour.model_to_rgb(fwd.grey, fwd.chroma, space)
            terms["feature"] = lc.feature_weight * tf.cast(self.feature_loss(rgb_real, rgb_fake), tf.float32)
        if lc.mask_weight > 0 and "mask" in fwd.extras:
            # partial: squared L2 to the partial target over every pixel.
            weight_map = tf.ones_like(fwd.extras["mask"]) if fwd.partial else fwd.extras["mask"]
            terms["mask"] = lc.mask_weight * losses.mask_loss(fwd.fake, fwd.extras["hints"], weight_map)
        if self.use_gan:
            terms["adversarial"] = lc.adversarial_weight * self.gen_adv_loss(fwd.d_fake)
        return terms

    def _discriminator_loss(self, fwd: _Forward) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """D's loss and its metrics: accuracy on real and fake per scale, and with several
        scales each scale's loss (the terms of eq. 6 of Górriz et al. 2019)."""
        lc = self.cfg.loss
        d_loss = self.disc_adv_loss(fwd.d_real, fwd.d_fake)
        metrics: dict[str, tf.Tensor] = {}
        # Least-squares D targets 0/1, so its decision boundary is 0.5, not 0.
        threshold = 0.5 if lc.adversarial == "least_squares" else 0.0
        acc_real, acc_fake = losses.discriminator_accuracy(fwd.d_real, fwd.d_fake, threshold=threshold)
        for i, (ar, af) in enumerate(zip(_as_list(acc_real), _as_list(acc_fake))):
            metrics[f"d_accuracy_real/scale{i}"] = ar
            metrics[f"d_accuracy_fake/scale{i}"] = af
        if len(fwd.d_real) > 1:
            for i, (r, f) in enumerate(zip(fwd.d_real, fwd.d_fake)):
                metrics[f"loss_per_scale/d_scale{i}"] = tf.stop_gradient(self.disc_adv_loss([r], [f]))
        return d_loss, metrics

    def _scaled(self, loss: tf.Tensor, share: tf.Tensor, opt) -> tf.Tensor:
        """``loss`` weighted by this replica's batch share (and loss-scaled under fp16)."""
        scaled = loss * share
        return opt.scale_loss(scaled) if self.precision == "mixed_float16" else scaled

    def _replica_step(self, batch, step, stage: int = 2):
        """One step on this replica's batch: the forward pass, G's loss terms and D's loss,
        then each network's update from its own tape; returns the metrics weighted by the
        replica's batch share. D's forward pass runs once: its output on the fake pair
        feeds both G's adversarial term (through ``g_tape``) and D's loss (``d_tape``)."""
        share = self._batch_share(batch)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fwd = self._forward(batch, step)
            g_terms = self._generator_terms(fwd)
            # Tarrés 2021 S4.3.2: segmentation alone first.
            trained = {"segmentation": g_terms["segmentation"]} if stage == 1 else g_terms
            g_loss = tf.add_n(list(trained.values()))
            g_scaled = self._scaled(g_loss, share, self.g_opt)
            if self.use_gan:
                d_loss, metrics = self._discriminator_loss(fwd)
                d_scaled = self._scaled(d_loss, share, self.d_opt)
            else:
                metrics = {}
        g_vars = self._generator_variables(stage)
        self.g_opt.apply_gradients(zip(self._agreed(g_tape.gradient(g_scaled, g_vars)), g_vars))
        if self.use_gan:
            d_vars = self.discriminator.trainable_variables
            self.d_opt.apply_gradients(zip(self._agreed(d_tape.gradient(d_scaled, d_vars)), d_vars))
            metrics["loss/d_total"] = d_loss
        for name, value in g_terms.items():
            metrics[f"loss/g_{name}"] = value
        metrics["loss/g_total"] = g_loss
        # Weighted by the batch share, so that their sum over replicas is the global mean.
        return {k: tf.cast(v, tf.float32) * share for k, v in metrics.items()}

    def _agreed(self, grads: list) -> list:
        """``mixed_float16`` over several replicas: an overflow on any replica makes every
        replica's gradients non-finite, so that all of them skip the update.

        Keras' ``LossScaleOptimizer`` decides whether to apply from the first replica's
        LOCAL gradients, before the cross-replica sum: an overflow on another replica
        went into the sum and made the weights NaN. One all-reduced flag per step fixes
        that; the optimiser then skips the step and halves the loss scale everywhere.
        """
        if self.precision != "mixed_float16" or self.replicas == 1:
            return grads
        present = [g for g in grads if g is not None]
        if not present:
            return grads
        finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in present]))
        bad = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32)
        )
        poison = tf.where(bad > 0.0, float("nan"), 0.0)
        return [None if g is None else g + tf.cast(poison, g.dtype) for g in grads]

    def _replica_fn(self, stage: int):
        """The per-replica step, compiled with XLA when ``jit_compile`` (only the step:
        reading the input stays outside the compiled computation, as on TPUs)."""
        if stage not in self._replica_fns:
            fn = functools.partial(self._replica_step, stage=stage)
            if self.jit_compile:
                fn = tf.function(fn, jit_compile=True)
            self._replica_fns[stage] = fn
        return self._replica_fns[stage]

    def _one_step(self, dist_batch, stage: int, host_split: bool = False) -> dict[str, tf.Tensor]:
        """One distributed step (in a ``tf.function``): metrics summed over replicas."""
        step = self.step.read_value()
        fn = self._replica_fn(stage)
        if host_split:
            fn = functools.partial(self._host_slice_step, fn)
        # Read while tracing: the CPU-only kernels are in this graph or not.
        with cpu_kernels(self.cfg.train.cpu_kernels):
            per_replica = self.strategy.run(fn, args=(dist_batch, step))
        self.step.assign_add(1)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def _host_slice_step(self, fn, global_batch, step):
        """Runs ``fn`` on this replica's slice of a global batch held on the host: the
        slice is cut on the host, so only it is copied to the replica's device.
        Consecutive slices; the first ``B % n`` replicas take one image more."""
        n = self.replicas
        i = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)
        with tf.device(self._host_device):
            size = tf.shape(tf.nest.flatten(global_batch)[0])[0]
            q, r = size // n, size % n
            start = i * q + tf.minimum(i, r)
            count = q + tf.cast(i < r, tf.int32)
            piece = tf.nest.map_structure(lambda t: t[start : start + count], global_batch)
        return fn(piece, step)

    @property
    def _host_device(self) -> str:
        return self.strategy.extended.host_device if hasattr(self.strategy.extended, "host_device") else "/cpu:0"

    def train_step(self, dist_batch) -> dict[str, tf.Tensor]:
        """Runs one distributed step on a batch from a distributed dataset.

        Returns the step's metrics as means over the global batch (float32 scalars).
        """
        stage = self.stage()
        if stage not in self._train_fns:
            self._train_fns[stage] = tf.function(functools.partial(self._one_step, stage=stage))
        return self._train_fns[stage](dist_batch)

    def train_loop(self, iterator, num_steps: int, *, host_split: bool = False):
        """Runs ``num_steps`` steps in one ``tf.function`` call, reading each step's batch
        from ``iterator`` inside it (a ``tf.range`` loop, as Orbit's loops).

        Args:
            iterator: a tf.data iterator of global batches (``host_split``: split over
                the replicas on the host) or a distributed iterator of per-replica batches.
            num_steps: steps in this call (a tensor argument: no retracing per count);
                must not cross the end of ``train.seg_pretrain_steps``.
            host_split: see ``iterator``.

        Returns:
            ``(metrics, nonfinite)``: the last step's metrics (means over the global
            batch), and ``nonfinite``, the metrics of the first step of this call whose
            metrics were NaN/Inf together with its number under the key ``"step"``
            (``"step"`` is -1 when every step was finite). Nothing leaves the device
            until the caller reads them.
        """
        stage = self.stage()
        key = (stage, host_split)
        if key not in self._loop_fns:

            @tf.function
            def _loop(it, n):
                metrics = self._one_step(next(it), stage, host_split)
                bad = self._first_bad(metrics, None)
                for _ in tf.range(n - 1):
                    metrics = self._one_step(next(it), stage, host_split)
                    bad = self._first_bad(metrics, bad)
                return metrics, bad

            self._loop_fns[key] = _loop
        return self._loop_fns[key](iterator, tf.constant(num_steps, tf.int64))

    def _first_bad(self, metrics: dict, bad: dict | None) -> dict:
        """Carries the metrics of the first step with a non-finite metric (and its step)."""
        finite = tf.reduce_all(tf.stack([tf.math.is_finite(v) for v in metrics.values()]))
        current = dict(metrics, step=tf.where(finite, tf.constant(-1, tf.int64), self.step.read_value()))
        if bad is None:
            return current
        take = tf.logical_and(tf.equal(bad["step"], -1), tf.logical_not(finite))
        return {k: tf.where(take, current[k], bad[k]) for k in bad}

    # ------------------------------------------------------------------ inference
    def colourise_batch(self, rgb_uint8, training: bool = False):
        """Grey -> colour for a batch at model size, for image grids.

        Returns ``(grey_rgb, fake_rgb, real_rgb)`` float32 in ``[0, 1]``.
        """
        space = self.cfg.model.colour_space
        grey, chroma = colour.rgb_to_model(rgb_uint8, space)
        # As at inference: an empty mask, or a full one for models that colour inside it only.
        g_in = inference.generator_input(
            grey, self.spec, full_mask=inference.colours_inside_mask_only(self.spec, self.cfg)
        )
        pred = inference.pick_chroma(self.generator(g_in, training=training), self.spec)
        return (
            colour.model_to_rgb(grey, tf.zeros_like(chroma), space),
            colour.model_to_rgb(grey, pred, space),
            colour.model_to_rgb(grey, chroma, space),
        )


def check_batch_split(global_batch: int, replicas: int) -> None:
    """Raises ``ValueError`` unless every replica gets at least one image of the global
    batch (``data.batch_size`` is global; an uneven split is exact, see the module
    docstring)."""
    if global_batch < replicas:
        raise ValueError(
            f"data.batch_size={global_batch} is the global batch, split over {replicas} replicas: "
            f"{replicas - global_batch} of them would get no image. Use data.batch_size >= {replicas} "
            f"(a multiple of {replicas} gives every replica the same share) or fewer replicas"
        )


def _feature_loss(lc):
    """The feature-reconstruction loss, with a clear error if its weights cannot load."""
    try:
        return losses.make_feature_reconstruction_loss(
            backbone=lc.feature_backbone, layer=lc.feature_layer, weights=lc.feature_weights
        )
    except Exception as exc:  # keras.utils.get_file raises a bare Exception offline
        if lc.feature_weights != "imagenet":
            raise
        raise ValueError(
            f"cannot load the ImageNet weights of {lc.feature_backbone} for the feature loss "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Without internet, set "
            "loss.feature_weights=/path/to/weights.h5 (Keras' notop file) or loss.feature_weights=none "
            "(a random backbone), or loss.feature_weight=0"
        ) from exc


def config_summary(cfg: ExperimentConfig) -> dict:
    """A flat dict of the config for logging."""
    return dataclasses.asdict(cfg)
