"""Training recipes that reproduce the paper's findings (one plain loop), and the findings report.

Loaded on use (``import depthaware`` does not import it): ``depthaware.recipes.paper.reproduce``
runs findings, ``depthaware.recipes.acting`` compares the tools that act on the bias.
"""
