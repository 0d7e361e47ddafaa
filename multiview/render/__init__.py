"""Volume rendering building blocks: depth sampling along rays and alpha compositing."""
