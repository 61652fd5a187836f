from ichscan.cli import app

app()
