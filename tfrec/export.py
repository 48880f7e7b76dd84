"""Exports a trained run as a versioned SavedModel for TF Serving (see `tfrec.exporting.exporter`).

    python -m tfrec.export --run_dir=runs/retrieval --export_base=exports --model_name=retrieval
    python -m tfrec.export --run_dir=runs/retrieval --model_name=retrieval --update_catalog=new_items.csv
    python -m tfrec.export --run_dir=runs/retrieval --model_name=retrieval --catalogue_dtype=int8

Writes `EXPORT_BASE/MODEL_NAME/VERSION/` atomically, checks its op types and
size, and prints them, then what it wrote. The library's INFO logs (which
report the same) show with `-v 0`.
"""


from absl import app, flags

from tfrec import quiet

quiet.configure(__name__, default_verbosity=-1)  # before TensorFlow is imported
from tfrec import config_flags  # noqa: E402
from tfrec.exporting import checks, exporter  # noqa: E402
from tfrec.models.catalogue_retrieval import CATALOGUE_DTYPES  # noqa: E402


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.export` in `flag_values`."""
    flags.DEFINE_string("run_dir", None, "Directory of the finished training run to export.", flag_values=flag_values)
    flags.DEFINE_string("export_base", "exports", "Directory holding one sub-directory per model name.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", None, "Model name: the export goes to EXPORT_BASE/MODEL_NAME/VERSION.",
                        flag_values=flag_values)
    flags.DEFINE_integer("version", None, "Version number to write; default: one after the highest existing.",
                         flag_values=flag_values)
    flags.DEFINE_string(
        "update_catalog", None,
        "Item file of new items to embed with the item tower and add to the catalogue (retrieval models "
        "only): the columns of the run's items file (checked as the table source checks it), or item_id,text.",
        flag_values=flag_values)
    flags.DEFINE_bool(
        "keep_catalogue", True,
        "Keep the items of the newest existing version that the run does not know (e.g. an earlier "
        "--update_catalog's), embedded from their text: each version holds every item of the one before.",
        flag_values=flag_values)
    flags.DEFINE_integer("top_k_max", None, "Largest k the recommend signatures accept; default: the catalogue size.",
                         flag_values=flag_values)
    flags.DEFINE_float(
        "max_size_ratio", 1.2,
        "Fail when the saved variables (catalogue matrix aside) exceed this multiple of the model "
        "weight bytes; warn when the whole export (catalogue data aside) does.", flag_values=flag_values)
    flags.DEFINE_float("max_graph_mb", 32.0,
                       "Fail when saved_model.pb exceeds this many MB (weights frozen into the graph as constants).",
                       flag_values=flag_values)
    flags.DEFINE_enum(
        "catalogue_dtype", "float32", list(CATALOGUE_DTYPES),
        "How the retrieval signatures store the catalogue matrix: float32, bfloat16 (half the bytes) or int8 "
        "(a quarter, one float32 scale per item); scores are computed in float32 with plain TensorFlow ops.",
        flag_values=flag_values)
    flags.mark_flags_as_required(["run_dir", "model_name"], flag_values=flag_values)


def run(flag_values: flags.FlagValues = flags.FLAGS) -> exporter.ExportResult:
    """Exports the run the parsed `flag_values` name."""
    return exporter.export_run(
        flag_values.run_dir, flag_values.export_base, flag_values.model_name, version=flag_values.version,
        update_catalog=flag_values.update_catalog, keep_catalogue=flag_values.keep_catalogue,
        top_k_max=flag_values.top_k_max, max_size_ratio=flag_values.max_size_ratio, max_graph_mb=flag_values.max_graph_mb,
        catalogue_dtype=flag_values.catalogue_dtype)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    result = run(flags.FLAGS)
    print(result.ops.summary())
    print(result.size.summary())
    print(f"exported {result.path} (version {result.version}): signatures {result.signatures}, "
          f"{result.num_items} items ({result.num_new_items} new)")


if __name__ == "__main__":
    config_flags.run(main, config_flags.help_groups("export flags", config_flags.defined(define_flags)),
                     errors=(ValueError, OSError, checks.ExportCheckError))
