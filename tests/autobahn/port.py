"""Ports Autobahn|Testsuite 25.10.1 (Python 2 code) to Python 3, in place.

    python port.py path/to/autobahntestsuite

PyPI's autobahntestsuite runs only on Python 2, which Debian no longer ships. Its
fuzzing client needs few changes beyond what fissix (lib2to3's successor) does:
Python 3 class and interface syntax, the package's imports of modes we do not run,
and byte strings where Python 2's str was bytes. wstest3.py adds the rest at run time.
"""
import pathlib
import re
import subprocess
import sys

root = pathlib.Path(sys.argv[1])
subprocess.run([sys.executable, "-m", "fissix", "-w", "-n", "-j", "2", str(root)], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def edit(path, change):
    text = path.read_text(encoding="utf-8")
    path.write_text(change(text), encoding="utf-8")


# A str literal with non-ASCII characters was its UTF-8 bytes in Python 2; wstest3.py
# reads every str as Latin-1 bytes, so spell those bytes as Latin-1 characters.
NON_ASCII = re.compile(r'"([^"\\\n]*[^\x00-\x7f][^"\\\n]*)"')


def case_file(text):
    # Old-style classes listed after `object`; Python 3 wants the class alone.
    text = re.sub(r"\(object,\s*(\w+),?\s*\)", r"(\1, )", text)
    # zope.interface's implements() is gone; its class decorator says the same.
    text = text.replace("from zope.interface import implements", "from zope.interface import implementer")
    text = re.sub(r"\nclass (\w+):\n\n   implements\(([\w.]+)\)\n", r"\n@implementer(\2)\nclass \1:\n", text)
    return NON_ASCII.sub(lambda m: '"%s".encode("utf-8").decode("latin-1")' % m.group(1), text)


for path in (root / "case").glob("*.py"):
    edit(path, case_file)


# The package imports every mode; some import Python 2-only WAMP test modules. Only the
# fuzzing client is used.
def package(text):
    for mod in ("wstest", "echo", "broadcast", "testee", "massconnect"):
        text = text.replace("from . import %s\n" % mod, "")
    return text


edit(root / "__init__.py", package)
# Received frames are lists of bytes.
edit(root / "fuzzing.py", lambda t: t.replace("p = ''.join(payload)", "p = b''.join(payload)"))
# Python 2's `/` on integers, in the one case that counts frames with it.
edit(root / "case" / "case10_1_1.py",
     lambda t: t.replace("len(self.payload) / self.p", "len(self.payload) // self.p"))
