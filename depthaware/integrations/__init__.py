"""Callbacks for the training loops people use: :mod:`.lightning` (PyTorch Lightning's
``Trainer``) and :mod:`.transformers` (Hugging Face's ``Trainer``). Each module imports its
framework itself, so importing :mod:`depthaware` never does; without the framework it raises one
line naming the extra to install."""
