"""Offline stand-in for get-pip.py, used by ansible-test to bootstrap pip in its venvs.

The machine reaches PyPI through its configured index but not bootstrap.pypa.io, so pip
comes from the interpreter's bundled ensurepip and is then upgraded to what was asked for.
"""
import subprocess
import sys


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    wanted = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    if wanted:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + wanted)


if __name__ == "__main__":
    main()
