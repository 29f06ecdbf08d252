"""The paper's measurements: trajectories, convergence rates, gradients, landscapes, sharpness,
frequency; and reports of a trained model or a checkpoint folder."""

from . import frequency, landscape, report, sharpness
from .convergence import BiasStats, ConvergenceReport, convergence, spearman, weight_variation
from .gradients import GradMagnitude, PredictivenessMonitor, grad_magnitude, predictiveness
from .trajectory import Trajectory

__all__ = [
    "BiasStats",
    "ConvergenceReport",
    "GradMagnitude",
    "PredictivenessMonitor",
    "Trajectory",
    "convergence",
    "frequency",
    "landscape",
    "report",
    "sharpness",
    "grad_magnitude",
    "predictiveness",
    "spearman",
    "weight_variation",
]
