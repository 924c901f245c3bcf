"""The model a config names: ``model._target_`` (a class path) built from the group's keys."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from hydra.utils import instantiate
from omegaconf import DictConfig

from errors import UserError, bad_target


def build_model(model_cfg: DictConfig, in_features: int, seed: int) -> nnx.Module:
    """``model._target_`` built with ``in_features``, ``rngs`` (:func:`rngs_from_seed`) and the
    group's other keys as keyword arguments (Hydra's ``instantiate``).

    The module maps inputs ``(n, in_features)`` to predictions ``(n,)``. Raises
    :class:`~errors.UserError` naming ``model._target_`` when the class cannot be found or
    refuses an argument (a wrong class path or key in ``conf/model/*.yaml``)."""
    try:
        model = instantiate(model_cfg, in_features=in_features, rngs=rngs_from_seed(seed))
    except Exception as exc:  # a wrong class path or argument in conf/model/*.yaml
        raise bad_target("model._target_", model_cfg.get("_target_"), exc) from None
    if not isinstance(model, nnx.Module):  # the run splits it into arrays with nnx.split
        raise UserError(
            f"bad config value model._target_={model_cfg.get('_target_')!r}: it built a "
            f"{type(model).__name__}, not a flax.nnx.Module; subclass nnx.Module, as "
            "models/linear.py does"
        )
    return model


def rngs_from_seed(seed: int) -> nnx.Rngs:
    """``nnx.Rngs(seed)``, with its key's data made on the host.

    ``jax.random.key(seed)`` is two eager operations, each a program to compile at a run's start
    (about 0.07 s of a first walkthrough run on a 2-core CPU). For JAX's default implementation,
    threefry2x32, the key's data is the seed's high and low 32 bits (``threefry_seed`` in
    ``jax/_src/prng.py``): ``[0, seed mod 2^32]`` for a seed that fits in 32 bits, which JAX
    takes as a 32-bit integer (``tests/test_model.py`` holds it to ``jax.random.key``). Any other
    seed or implementation: ``nnx.Rngs(seed)`` itself."""
    if jax.config.jax_default_prng_impl == "threefry2x32" and -(2**31) <= seed < 2**31:
        data = np.array([0, seed & 0xFFFFFFFF], np.uint32)
        return nnx.Rngs(jax.random.wrap_key_data(data, impl="threefry2x32"))
    return nnx.Rngs(seed)
