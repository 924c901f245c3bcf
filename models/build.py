"""The model a config names: ``model._target_`` (a class path) built from the group's keys."""

from __future__ import annotations

from flax import nnx
from hydra.utils import instantiate
from omegaconf import DictConfig

from errors import UserError, bad_target


def build_model(model_cfg: DictConfig, in_features: int, seed: int) -> nnx.Module:
    """``model._target_`` built with ``in_features``, ``rngs=nnx.Rngs(seed)`` and the group's
    other keys as keyword arguments (Hydra's ``instantiate``).

    The module maps inputs ``(n, in_features)`` to predictions ``(n,)``. Raises
    :class:`~errors.UserError` naming ``model._target_`` when the class cannot be found or
    refuses an argument (a wrong class path or key in ``conf/model/*.yaml``)."""
    try:
        model = instantiate(model_cfg, in_features=in_features, rngs=nnx.Rngs(seed))
    except Exception as exc:  # a wrong class path or argument in conf/model/*.yaml
        raise bad_target("model._target_", model_cfg.get("_target_"), exc) from None
    if not isinstance(model, nnx.Module):  # the run splits it into arrays with nnx.split
        raise UserError(
            f"bad config value model._target_={model_cfg.get('_target_')!r}: it built a "
            f"{type(model).__name__}, not a flax.nnx.Module; subclass nnx.Module, as "
            "models/linear.py does"
        )
    return model
