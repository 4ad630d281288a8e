"""How much label information the latent codes carry (R-VAE paper, section 5.2, appendix C.2)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.neural_network import MLPClassifier
from torch.utils.data import DataLoader

from .figures import guarded

__all__ = ["LatentClassification", "codes_and_labels"]


@torch.no_grad()
def codes_and_labels(model, dataset, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``model.latent_code`` of every ``(x, label)`` item of a dataset, and the labels."""
    codes, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        codes.append(model.latent_code(x.to(model.device)).cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(codes).double().numpy(), torch.cat(labels).numpy()


class LatentClassification(L.Callback):
    """At the end of testing, trains a classifier on the training set's latent codes and logs its
    F1 scores on the test set's: ``test/code_f1`` (the average over classes, Table 3's "Avg") and
    ``test/code_f1_class_<k>`` per class. The classifier is the paper's: one hidden layer of 100 ReLU
    units, Adam with learning rate 1e-3, batches of 64, 100 epochs (scikit-learn's MLPClassifier).

    Args:
        hidden: hidden units.
        epochs: training epochs.
        seed: the classifier's random state.

    If the classifier cannot be trained or scored (e.g. NaN codes), the scores are left out with a warning
    ``"LatentClassification: the latent-code classifier skipped: <reason>"``; the run's other metrics stand.
    """

    def __init__(self, hidden: int = 100, epochs: int = 100, seed: int = 0):
        self.hidden, self.epochs, self.seed = hidden, epochs, seed

    def on_test_epoch_end(self, trainer, pl_module):
        guarded(type(self).__name__, "the latent-code classifier", self._classify, trainer, pl_module)

    def _classify(self, trainer, pl_module) -> None:
        train_codes, train_labels = codes_and_labels(pl_module, trainer.datamodule.train_set)
        test_codes, test_labels = codes_and_labels(pl_module, trainer.datamodule.test_set)
        classifier = MLPClassifier((self.hidden,), solver="adam", learning_rate_init=1e-3, batch_size=64,
                                   max_iter=self.epochs, random_state=self.seed)
        classifier.fit(train_codes, train_labels)
        classes = np.unique(train_labels)
        scores = f1_score(test_labels, classifier.predict(test_codes), labels=classes, average=None, zero_division=0)
        pl_module.log("test/code_f1", float(scores.mean()))
        for label, score in zip(classes, scores):
            pl_module.log(f"test/code_f1_class_{label}", float(score))
