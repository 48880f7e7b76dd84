"""Pieces of the SavedModel export (`tfrec.export` is the entry point).

- `layout`: versioned, atomic `BASE/NAME/VERSION/` directories;
- `catalogue`: the served item ids and texts, and `--update_catalog` files;
- `serving_module`: the `tf.Module` whose functions are the signatures;
- `checks`: op types allowed in the graph, size against the weights;
- `warmup`: `assets.extra/tf_serving_warmup_requests`.
"""
