"""The SavedModel export: `export_model`, `export_run`, `load` (`tfrec.export` is the command line).

- `exporter`: `export_model` / `export_run` (with `ExportOptions`), the whole export;
- `layout`: versioned, atomic `BASE/NAME/VERSION/` directories;
- `catalogue`: the served item ids and texts, and `--update_catalog` files;
- `serving_module`: the `tf.Module` whose functions are the signatures;
- `checks`: op types allowed in the graph, size against the weights;
- `warmup`: `assets.extra/tf_serving_warmup_requests`.
"""

from tfrec.exporting.exporter import ExportOptions, ExportResult, export_model, export_run, load

__all__ = ["ExportOptions", "ExportResult", "export_model", "export_run", "load"]
