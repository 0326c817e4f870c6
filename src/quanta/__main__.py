from quanta.cli import run

run()
