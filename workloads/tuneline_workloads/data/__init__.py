"""The data pipeline of the fine-tuning workload: loading with validation (file:line in every
error), cleaning (sensitive filter, dedupe, balancing, split, mixing), tokenisation (chat template
with assistant-only loss, sliding window, packing) and the data report."""

from tuneline_workloads.data.cleaning import SensitiveFilter, balance, dedupe, jaccard, mix, shingles, split
from tuneline_workloads.data.errors import DatasetError
from tuneline_workloads.data.loading import LoadResult, Row, load_rows
from tuneline_workloads.data.pipeline import (PreparedData, contains_key_fact, data_format, load_held_out, prepare_data,
                                             write_json_atomic)
from tuneline_workloads.data.tokenization import (IGNORE_INDEX, collate, encode_chat, encode_rows, encode_text,
                                                  length_histogram, pack, sliding_windows)

__all__ = ["DatasetError", "IGNORE_INDEX", "LoadResult", "PreparedData", "Row", "SensitiveFilter", "balance",
           "collate", "contains_key_fact", "data_format", "dedupe", "encode_chat", "encode_rows", "encode_text", "jaccard",
           "length_histogram", "load_held_out", "load_rows", "mix", "pack", "prepare_data", "shingles",
           "sliding_windows", "split", "write_json_atomic"]
