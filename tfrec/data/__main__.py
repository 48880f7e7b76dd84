"""Entry point of `python -m tfrec.data describe|convert`: runs the data command line, `tfrec.data_tool`.

Run, not imported: the library package does not depend on its command line.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("tfrec.data_tool", run_name="__main__")
