"""Entry point of `python -m tfrec.data` (see `tfrec.data.cli`)."""

from absl import app

from tfrec.data import cli

if __name__ == "__main__":
    app.run(cli.main)
