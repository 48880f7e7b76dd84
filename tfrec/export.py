"""Exports a trained run as a versioned SavedModel for TF Serving (see `tfrec.exporting.exporter`).

    python -m tfrec.export --run_dir=runs/retrieval --export_base=exports --model_name=retrieval
    python -m tfrec.export --run_dir=runs/retrieval --model_name=retrieval --update_catalog=new_items.csv
    python -m tfrec.export --run_dir=runs/retrieval --model_name=retrieval --catalogue_dtype=int8

Writes `EXPORT_BASE/MODEL_NAME/VERSION/` atomically, checks its op types and
size, and prints them, then what it wrote. The library's INFO logs (which
report the same) show with `-v 0`.
"""


from absl import flags

from tfrec import quiet

quiet.configure(__name__, default_verbosity=-1)  # before TensorFlow is imported
from tfrec import config_flags  # noqa: E402
from tfrec.exporting import checks, exporter  # noqa: E402


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.export` in `flag_values`."""
    flags.DEFINE_string("run_dir", None, "Directory of the finished training run to export.", flag_values=flag_values)
    flags.DEFINE_string("export_base", "exports", "Directory holding one sub-directory per model name.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", None, "Model name: the export goes to EXPORT_BASE/MODEL_NAME/VERSION.",
                        flag_values=flag_values)
    config_flags.define_flags(exporter.ExportOptions, flag_values)
    flags.mark_flags_as_required(["run_dir", "model_name"], flag_values=flag_values)


def run(flag_values: flags.FlagValues = flags.FLAGS) -> exporter.ExportResult:
    """Exports the run the parsed `flag_values` name."""
    options = config_flags.from_flags(exporter.ExportOptions, flag_values)
    return exporter.export_run(flag_values.run_dir, flag_values.export_base, flag_values.model_name, options)


def main(argv):
    result = run(flags.FLAGS)
    print(result.ops.summary())
    print(result.size.summary())
    print(f"exported {result.path} (version {result.version}): signatures {result.signatures}, "
          f"{result.num_items} items ({result.num_new_items} new)")


if __name__ == "__main__":
    config_flags.run(main, config_flags.help_groups("export flags", config_flags.defined(define_flags)),
                     errors=(ValueError, OSError, checks.ExportCheckError))
