"""The paper's measurements: trajectories, convergence rates, gradients, landscapes, sharpness,
frequency; and tables of a trained model or a checkpoint folder
(:mod:`depthaware.measure.tables`)."""

from . import frequency, sharpness, tables
from .bias import BiasStats, spearman, weight_variation
from .distances import convergence
from .frequency import block_contributions, response_frequency
from .gradients import GradMagnitude, PredictivenessMonitor, grad_magnitude, predictiveness
from .landscapes import Landscape, landscape
from .rates import ConvergenceReport, Logger, ScalarWriter, WindowRates
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
    "frequency",
    "grad_magnitude",
    "landscape",
    "layer_sharpness",
    "predictiveness",
    "response_frequency",
    "sharpness",
    "spearman",
    "tables",
    "top_eigenvalue",
    "weight_variation",
]
