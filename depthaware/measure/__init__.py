"""The paper's measurements: trajectories, convergence rates, gradients, landscapes, frequency;
and reports of a trained model or a checkpoint folder."""

from . import frequency, landscape, report
from .convergence import BiasStats, ConvergenceReport, convergence, spearman
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
    "grad_magnitude",
    "predictiveness",
    "spearman",
]
