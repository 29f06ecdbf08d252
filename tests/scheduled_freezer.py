"""A freezer that freezes named layers at given steps: the callbacks' tests need freezing at
known steps (before and after a checkpoint), whatever any signal says."""

from depthaware.freeze import FrozenLayers


class Scheduled(FrozenLayers):
    """Freezes each layer of ``at`` (``{layer: step}``) once :attr:`t` reaches its step."""

    def __init__(self, optimizer, layers, at: dict[str, int]):
        super().__init__(optimizer, layers)
        self.at = at

    def step(self) -> None:
        self.t += 1
        for name, when in self.at.items():
            if self.t == when and name not in self.frozen:
                self.freeze(name)


def at_3_and_5(opt, layers):
    """Layer '0' at step 3, layer '2' at step 5 (the head, '4', trains)."""
    return Scheduled(opt, layers, {"0": 3, "2": 5})
