"""The data contract of lvm.batches: the data of a batch, and a datamodule's labels as named columns, the same names
in the embedding table, the trust diagnostics and the plots."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from lvm.batches import batch_data, factor_names, label_columns
from lvm.tools.trust import label_fields


def test_batch_data_is_the_first_item_of_a_tuple_or_the_batch_itself():
    x = torch.zeros(3, 2)
    assert batch_data((x, torch.arange(3))) is x and batch_data(x) is x


def test_1d_labels_are_a_label_column_with_names_where_the_datamodule_has_them():
    labels = np.array([2, 0, 1, 2])
    columns = label_columns(labels, SimpleNamespace())
    assert list(columns) == ["label"] and (columns["label"] == labels).all()
    named = label_columns(labels, SimpleNamespace(label_names=["chirp", "trill", "whistle"]))
    assert list(named) == ["label", "label_name"]
    assert named["label_name"].tolist() == ["whistle", "chirp", "trill", "whistle"]
    assert list(label_columns(labels, SimpleNamespace(label_names=None))) == ["label"]


def test_factors_are_one_column_each_named_by_the_datamodule_or_factor1_to_factorF():
    factors = np.arange(12.0).reshape(4, 3)  # [n, F]
    default = label_columns(factors, SimpleNamespace())
    assert list(default) == ["factor1", "factor2", "factor3"] == factor_names(SimpleNamespace(), 3)
    for k, values in enumerate(default.values()):
        assert (values == factors[:, k]).all()
    named = label_columns(factors, SimpleNamespace(factor_names=("shape", "scale", "hue")))
    assert list(named) == ["shape", "scale", "hue"] and (named["hue"] == factors[:, 2]).all()


def test_trust_decodes_the_factor_columns_the_embedding_table_names():
    factors = np.arange(8.0).reshape(4, 2)
    for datamodule in (SimpleNamespace(), SimpleNamespace(factor_names=["shape", "scale"])):
        table = pd.DataFrame({"split": "test", "z1": np.zeros(4)} | label_columns(factors, datamodule))
        decoded = label_fields(table, datamodule, [])
        assert list(decoded) == factor_names(datamodule, 2)
        assert all((decoded[name] == table[name].to_numpy()).all() for name in decoded)
