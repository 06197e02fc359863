"""Lowering passes: each a pure function Net -> Net, run in order by run_pipeline."""
from .batchnorm_scale_to_affine import batchnorm_scale_to_affine
from .fold_affine_into_producer import fold_affine, fold_affine_into_producer
from .pipeline import PassReport, PassResult, default_passes, run_pipeline
from .remove_dropout import remove_dropout
from .remove_split import remove_split
from .remove_training_layers import remove_training_layers

__all__ = ["run_pipeline", "PassReport", "PassResult", "default_passes", "remove_training_layers", "remove_split",
           "remove_dropout", "batchnorm_scale_to_affine", "fold_affine_into_producer", "fold_affine"]
