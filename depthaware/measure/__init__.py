"""The paper's measurements: trajectories, convergence rates, gradient statistics."""

from . import frequency
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
    "grad_magnitude",
    "predictiveness",
    "spearman",
]
