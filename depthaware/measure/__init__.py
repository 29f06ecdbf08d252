"""The paper's measurements: trajectories, convergence rates, gradients, landscapes, sharpness,
frequency; a checkpoint folder's report (:func:`from_checkpoints`) and a trained model's table
(:func:`from_model`)."""

from . import frequency, sharpness
from .bias import BiasStats, spearman
from .checkpoint_folder import default_windows, from_checkpoints
from .distances import convergence
from .frequency import block_contributions, response_frequency
from .gradients import GradMagnitude, PredictivenessMonitor, grad_magnitude, predictiveness
from .landscapes import Landscape, landscape
from .loggers import Logger, ScalarWriter
from .model_table import from_model
from .rates import ConvergenceReport, WindowRates, weight_variation
from .sharpness import layer_sharpness, top_eigenvalue
from .trajectory import Trajectory

__all__ = [
    "BiasStats",
    "ConvergenceReport",
    "GradMagnitude",
    "Landscape",
    "Logger",
    "PredictivenessMonitor",
    "ScalarWriter",
    "Trajectory",
    "WindowRates",
    "block_contributions",
    "convergence",
    "default_windows",
    "frequency",
    "from_checkpoints",
    "from_model",
    "grad_magnitude",
    "landscape",
    "layer_sharpness",
    "predictiveness",
    "response_frequency",
    "sharpness",
    "spearman",
    "top_eigenvalue",
    "weight_variation",
]
