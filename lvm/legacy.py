"""Checkpoints written before the layered core (commit f407916 and earlier) name their classes by the old paths.

A training checkpoint keeps the model's constructor arguments as ``class_path``/``init_args`` configs in
``checkpoint["hyper_parameters"]`` and the datamodule's in ``checkpoint["datamodule_hyper_parameters"]`` (its
``_class_path``); ``load_from_checkpoint`` and the tools import those paths to rebuild the objects. The old layout
installed the plugin folders as top-level packages (``objectives.QMCObjective``, ``callbacks.LatentPlots``,
``datamodules.DigitsDataModule``) and kept flat modules in ``lvm`` (``lvm.loggers``, ``lvm.qmc``, ...); they are now
``lvm.objectives``, ``lvm.callbacks``, ``lvm.datamodules`` and the layer packages (``lvm.runs.loggers``,
``lvm.estimators.qmc``, ...), so an old checkpoint names classes that no longer import. :func:`upgrade_checkpoint`
rewrites those names to the new ones; the weights and everything else are untouched (the modules kept their
parameter names). ``LatentVariableModel.load_from_checkpoint`` and :func:`lvm.runs.files.read_checkpoint` apply it
on every load, and ``python -m lvm.tools.upgrade_checkpoint OLD.ckpt NEW.ckpt`` rewrites a file once and for all.

The tables are exact: the old plugin packages' classes by name (so a user's own top-level ``objectives`` or
``datamodules`` package, which the old layout's names would have shadowed, keeps its paths), lvm's moved modules by
module. A path that is in neither (a current path, a third-party class, a user's plugin, a typo) is left alone: it
fails, as before, where it is imported, with the name the user wrote. The rewrite is idempotent: no new path is an old
name, so a current (or already upgraded) checkpoint is left as it is and the list of changes is empty.
"""

from __future__ import annotations

import io
import os
from argparse import Namespace
from collections.abc import MutableMapping

import torch

__all__ = ["RENAMED_MODULES", "RENAMED_NAMES", "upgraded_path", "upgrade_checkpoint", "upgraded_source"]

# Old module -> its new module. The plugin folders were top-level packages; the vocalization modules are one package.
RENAMED_MODULES = {
    "objectives": "lvm.objectives",
    "callbacks": "lvm.callbacks",
    "datamodules": "lvm.datamodules",
    **{f"{folder}.{module}": f"lvm.{folder}.{module}" for folder, modules in {
        "objectives": "elbo iwae lattice_direct lattice_proxy mlae qmc riemannian taylor",
        "callbacks": "diagnostics explorer fid figures frechet heldout_batches kl_warmup latent_classification "
                     "latent_plots latent_sampler posterior_plots two_phase",
        "datamodules": "base celeba digits hdf5 miniatures mnist mocap omniglot shapes3d sinusoid tabular",
    }.items() for module in modules.split()},
    "datamodules.vocalizations": "lvm.datamodules.vocalizations.datamodule",
    "datamodules.vocalization_preprocess": "lvm.datamodules.vocalizations.preprocess",
    "datamodules.segment": "lvm.datamodules.vocalizations.segment",
    # lvm's flat modules, now in the layer packages (``lvm.analysis``, a module then, is a package now: by name below)
    "lvm.geometry": "lvm.numerics.geometry",
    "lvm.hutchinson": "lvm.numerics.hutchinson",
    "lvm.jacobians": "lvm.numerics.jacobians",
    "lvm.lattices": "lvm.numerics.lattices",
    "lvm.lowrank_gaussian": "lvm.numerics.gaussian",
    "lvm.quantizers": "lvm.numerics.quantizers",
    "lvm.defensive": "lvm.estimators.defensive",
    "lvm.evaluation": "lvm.estimators.heldout",
    "lvm.metrics": "lvm.estimators.metrics",
    "lvm.qmc": "lvm.estimators.qmc",
    "lvm.variational": "lvm.estimators.variational",
    "lvm.checkpointing": "lvm.runs.checkpointing",
    "lvm.cli": "lvm.runs.cli",
    "lvm.heap": "lvm.runs.heap",
    "lvm.loggers": "lvm.runs.loggers",
    "lvm.metrics_file": "lvm.runs.metrics_file",
    "lvm.rng_state": "lvm.runs.rng_state",
    "lvm.embedding": "lvm.analysis.embedding",
    "lvm.explorer": "lvm.plotting.explorer",
    "lvm.plots": "lvm.plotting.figures",
    "lvm.compare": "lvm.tools.compare",
    "lvm.embed": "lvm.tools.embed",
    "lvm.explore": "lvm.tools.explore",
    "lvm.trust": "lvm.tools.trust",
}

# The classes of the old plugin modules (the names configs and checkpoints give them; functions never are).
_PLUGIN_CLASSES = {
    "objectives.elbo": "ELBO", "objectives.iwae": "IWAE", "objectives.lattice_direct": "DirectLatticeObjective",
    "objectives.lattice_proxy": "GaussianProxyLatticeObjective", "objectives.mlae": "MLAEObjective",
    "objectives.qmc": "QMCObjective", "objectives.riemannian": "RiemannianELBO", "objectives.taylor": "TaylorELBO",
    "callbacks.diagnostics": "TrustDiagnostics", "callbacks.explorer": "Explorer", "callbacks.fid": "FID",
    "callbacks.figures": "Figures", "callbacks.frechet": "GaussianFrechetScore", "callbacks.heldout_batches":
    "HeldOutBatches", "callbacks.kl_warmup": "KLWarmup", "callbacks.latent_classification": "LatentClassification",
    "callbacks.latent_plots": "LatentPlots", "callbacks.latent_sampler": "FitLatentSampler",
    "callbacks.posterior_plots": "PosteriorPlots", "callbacks.two_phase": "TwoPhaseTraining",
    "datamodules.base": "TensorBatches SplitDataModule", "datamodules.celeba": "CelebADataModule",
    "datamodules.digits": "DigitsDataModule", "datamodules.hdf5": "H5Rows",
    "datamodules.mnist": "MNISTDataModule FashionMNISTDataModule BinarizedMNISTDataModule",
    "datamodules.mocap": "Skeleton MocapDataModule", "datamodules.omniglot": "DynamicBinarization OmniglotDataModule",
    "datamodules.shapes3d": "Shapes3DDataModule", "datamodules.sinusoid": "NoisySinusoidDataModule",
    "datamodules.tabular": "TabularDataModule JitteredDataset PowerDataModule GasDataModule HepmassDataModule "
                           "MinibooneDataModule",
    "datamodules.vocalizations": "VocalizationsDataModule", "datamodules.segment": "SegmentParams",
    "datamodules.vocalization_preprocess": "SpectrogramParams",
}
# What the plugin packages export, then and now: such a class is named at the package (as the configs do).
_PACKAGE_CLASSES = {
    "objectives": "ELBO IWAE DirectLatticeObjective GaussianProxyLatticeObjective MLAEObjective QMCObjective "
                  "RiemannianELBO TaylorELBO",
    "callbacks": "TrustDiagnostics Explorer FID GaussianFrechetScore KLWarmup LatentClassification LatentPlots "
                 "FitLatentSampler PosteriorPlots TwoPhaseTraining",
    "datamodules": "CelebADataModule DigitsDataModule MNISTDataModule FashionMNISTDataModule BinarizedMNISTDataModule "
                   "MocapDataModule OmniglotDataModule Shapes3DDataModule NoisySinusoidDataModule PowerDataModule "
                   "GasDataModule HepmassDataModule MinibooneDataModule VocalizationsDataModule",
}


def _plugin_names() -> dict[str, str]:
    names = {}
    for package, classes in _PACKAGE_CLASSES.items():
        names.update({f"{package}.{name}": f"{RENAMED_MODULES[package]}.{name}" for name in classes.split()})
    for module, classes in _PLUGIN_CLASSES.items():
        package = module.partition(".")[0]
        for name in classes.split():
            exported = name in _PACKAGE_CLASSES[package].split()
            names[f"{module}.{name}"] = f"{RENAMED_MODULES[package if exported else module]}.{name}"
    return names


# Old dotted path -> new one, name by name: the plugins' classes (only these old top-level names are rewritten, so a
# user's own ``objectives`` or ``datamodules`` package keeps its paths), the old module ``lvm.analysis`` (its name is a
# package now) and names that left their old module's successor.
RENAMED_NAMES = {
    **_plugin_names(),
    **{f"lvm.analysis.{name}": f"lvm.analysis.landscape.{name}" for name in (
        "aggregated_posterior jacobian_frobenius_norm displacements weighted_mean_shift is_flat density_at "
        "density_geodesic").split()},
    **{f"lvm.diagnostics.{name}": f"lvm.analysis.{module}.{name}" for module, names in {
        "consistency": "aligned_r2 consistency consistency_summary",
        "decodability": "decoding_features knn_decodability",
        "clusters": "lattice_modes nearest_mode cluster_structure",
        "arrays": "json_ready"}.items()
       for name in names.split()},
    "lvm.cli.UsageError": "lvm.runs.files.UsageError",
    "lvm.networks.derived_weight": "lvm.numerics.derived.derived_weight",
    "lvm.networks.reusing_derived_weights": "lvm.numerics.derived.reusing_derived_weights",
    "lvm.variational.effective_sample_size": "lvm.numerics.logspace.effective_sample_size",
}

_KEYS = ("class_path", "_class_path")


def upgraded_path(path: str) -> str:
    """The current dotted path of a class (or function) that the old layout named ``path``; ``path`` itself when it
    is not an old name (a current path, a third-party class, a user's plugin, a typo)."""
    if path in RENAMED_NAMES:
        return RENAMED_NAMES[path]
    module, _, name = path.rpartition(".")
    if module.startswith("lvm.") and module in RENAMED_MODULES:
        return f"{RENAMED_MODULES[module]}.{name}"
    return path


def _upgrade(value, changes: list[tuple[str, str]]) -> None:
    """Rewrite, in place, every ``class_path``/``_class_path`` string in ``value`` and the dicts, lists, tuples'
    items and Namespaces below it."""
    if isinstance(value, MutableMapping):
        items = list(value.items())
        setter = value.__setitem__
    elif isinstance(value, Namespace):  # jsonargparse's Namespace derives from argparse's
        items = list(vars(value).items())

        def setter(key, new):
            setattr(value, key, new)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _upgrade(item, changes)
        return
    else:
        return
    for key, item in items:
        if key in _KEYS and isinstance(item, str):
            new = upgraded_path(item)
            if new != item:
                setter(key, new)
                changes.append((item, new))
        else:
            _upgrade(item, changes)


def upgrade_checkpoint(checkpoint: dict) -> list[tuple[str, str]]:
    """Rewrite the old class paths of a loaded training checkpoint to the current ones, in place.

    Every ``class_path`` and ``_class_path`` string in ``checkpoint["hyper_parameters"]`` and
    ``checkpoint["datamodule_hyper_parameters"]`` (at any depth of dicts, lists and Namespaces) that names a class by
    the layout before the layered core (see the module's docstring and the tables) is replaced by its current path.
    Returns the ``(old, new)`` pairs changed, in the order met; empty for a current checkpoint. Idempotent: a second
    call changes nothing.
    """
    changes: list[tuple[str, str]] = []
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if key in checkpoint:
            _upgrade(checkpoint[key], changes)
    return changes


def upgraded_source(checkpoint_path, weights_only: bool | None = None) -> tuple[object, list[tuple[str, str]]]:
    """What Lightning's ``load_from_checkpoint`` should read for ``checkpoint_path`` (a path or a file-like object),
    and the renames: the path or object itself for a current checkpoint (or a URL, which Lightning reads itself), else
    an in-memory copy with the old class paths upgraded. Read with the caller's ``weights_only``, so no file is trusted
    more than Lightning's own load would; a local file is memory-mapped for this first look (its tensors are not read
    twice)."""
    if isinstance(checkpoint_path, (str, os.PathLike)):
        if not os.path.isfile(checkpoint_path):  # a URL or a remote filesystem
            return checkpoint_path, []
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=weights_only, mmap=True)
        start = None
    else:
        start = checkpoint_path.tell() if checkpoint_path.seekable() else None
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=weights_only)
    changes = upgrade_checkpoint(checkpoint) if isinstance(checkpoint, dict) else []
    if not changes and (start is not None or isinstance(checkpoint_path, (str, os.PathLike))):
        if start is not None:
            checkpoint_path.seek(start)
        return checkpoint_path, []
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer, changes
