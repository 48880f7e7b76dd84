"""Entry point of `python -m tfrec.data` (see `tfrec.data.cli`)."""

from absl import app, flags

from tfrec.data import cli

if __name__ == "__main__":
    cli.define_flags()
    flags.adopt_module_key_flags(cli)
    app.run(cli.main)
