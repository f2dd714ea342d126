"""What a person sees: on a terminal, a live progress bar instead of a line per fragment; human
log lines carry the message, not the machine fields of the JSON lines."""
import os
import pty
import select
import subprocess
from pathlib import Path

BIN = os.environ.get("SLAF_CONVERT_BIN")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pbmc-like.h5ad"


def run_on_terminal(argv, cwd):
    """Run `argv` with stderr on a pseudo-terminal; its exit code and what the terminal got."""
    main, side = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=side)
    os.close(side)
    screen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(main, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        screen += data
    proc.wait(timeout=60)
    os.close(main)
    return proc.returncode, screen.decode("utf-8", "replace")


def test_terminal_shows_a_progress_bar(tmp_path):
    code, screen = run_on_terminal(
        [BIN, "convert", str(EXAMPLE), "out.slaf", "--chunk-size", "50"], tmp_path)
    assert code == 0, screen
    assert "/400 cells," in screen and " left" in screen, screen
    # The bar replaces the per-fragment lines, and no JSON reaches a terminal.
    assert "wrote cells" not in screen and '"event"' not in screen, screen
    assert (tmp_path / "out.slaf" / "_SLAF_COMPLETE.json").exists()


def test_human_lines_leave_out_the_machine_fields(tmp_path):
    proc = subprocess.run([BIN, "--log-format", "human", "convert", str(EXAMPLE), "out.slaf",
                           "--chunk-size", "200"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    # Not a terminal: progress stays as lines, one per fragment, naming the shard once.
    assert [l for l in lines if "wrote cells" in l] == [
        l for l in lines if l.startswith("shard 0: wrote cells")] and len(lines) > 3, lines
    for line in lines:
        assert "plan_hash" not in line and "event=" not in line and not line.startswith("{"), line
