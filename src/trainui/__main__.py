from trainui.cli import run

run()
