from ichscan.cli import app

if __name__ == "__main__":  # not when a spawned process (e.g. a Dask worker) re-imports it
    app()
