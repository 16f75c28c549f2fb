"""sysctl_profile.py -- what tuning/check and tuning/apply share: reading a
sysctl profile and the /proc/sys tree it is compared with.

A profile is an /etc/sysctl.d file (sysctl.conf(5)): one `key = value` a
line, `#` or `;` starting a comment, blank lines ignored.  A key is written
with dots (`net.core.somaxconn`) or slashes (`net/core/somaxconn`); with
slashes a dot is part of a name (`net/ipv4/conf/eth0.100/rp_filter`).  A
leading `-` on a key means "a missing key is not an error" (systemd-sysctl
and procps agree on that); it is kept as `optional`.  Globs are refused: a
profile names its keys.  When a key appears twice the later value wins, as
it does when the file is loaded, and the key keeps its first position.

Values are compared whitespace-normalised: the kernel prints
net.ipv4.tcp_rmem as "4096\t131072\t6291456" and a profile writes
"4096 131072 6291456"; both normalise to single spaces.

The root of the tree is /proc/sys unless PETREL_SYSCTL_ROOT or --root says
otherwise, so the tests compare against a fake tree in a temp dir.

Only the Python standard library is used (Debian's /usr/bin/python3).
"""

import os
from pathlib import Path

DEFAULT_ROOT = "/proc/sys"
ROOT_ENV = "PETREL_SYSCTL_ROOT"
HERE = Path(__file__).resolve().parent
DEFAULT_PROFILE = "high-volume.conf"


class ProfileError(Exception):
	"""A profile that cannot be read or parsed: a usage error (exit 2)."""


class Entry:
	"""One `key = value` of a profile."""

	def __init__(self, key, value, optional, lineno):
		self.key = key		# as written, without the leading '-'
		self.value = value	# as written, stripped
		self.optional = optional
		self.lineno = lineno

	def relpath(self):
		"""The key's file relative to the root: net.core.somaxconn ->
		net/core/somaxconn."""
		if "/" in self.key:
			return self.key.strip("/")
		return self.key.replace(".", "/")


def normalise(value):
	"""A value with runs of whitespace made one space, ends stripped."""
	return " ".join(value.split())


def resolve_profile(name):
	"""The profile's path: `name` as given when it exists, else the file of
	that name next to this module (so `check kumomta-seed.conf` works from
	anywhere).  ProfileError when neither exists."""
	p = Path(name)
	if p.is_file():
		return p
	if "/" not in name and (HERE / name).is_file():
		return HERE / name
	raise ProfileError("%s: no such profile" % name)


def parse_profile(path):
	"""[Entry] in file order.  ProfileError for an unreadable file, a line
	without '=', an empty key or value, or a glob."""
	try:
		text = Path(path).read_text()
	except (OSError, UnicodeDecodeError) as e:
		raise ProfileError("%s: cannot read: %s" % (path, getattr(e, "strerror", None) or e))
	entries = {}
	for lineno, raw in enumerate(text.splitlines(), 1):
		line = raw.strip()
		if not line or line[0] in "#;":
			continue
		key, eq, value = line.partition("=")
		key, value = key.strip(), value.strip()
		where = "%s:%d" % (path, lineno)
		if not eq:
			raise ProfileError("%s: expected `key = value`, got %r" % (where, raw))
		optional = key.startswith("-")
		key = key.lstrip("-").strip()
		if not key or not value:
			raise ProfileError("%s: empty key or value" % where)
		if any(c in key for c in "*?[") or ".." in key or " " in key:
			raise ProfileError("%s: %r is not a plain sysctl key" % (where, key))
		if key in entries:
			entries[key].value, entries[key].lineno = value, lineno
		else:
			entries[key] = Entry(key, value, optional, lineno)
	if not entries:
		raise ProfileError("%s: no `key = value` lines" % path)
	return list(entries.values())


def resolve_root(arg):
	"""--root when given, else $PETREL_SYSCTL_ROOT, else /proc/sys; a
	ProfileError when it is not a directory."""
	root = Path(arg or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
	if not root.is_dir():
		raise ProfileError("%s: not a directory (the sysctl root)" % root)
	return root


def read_current(root, entry):
	"""(status, text): ("value", normalised value), ("absent", None) when
	the key has no file, ("unreadable", reason) otherwise."""
	path = root / entry.relpath()
	try:
		return "value", normalise(path.read_text())
	except FileNotFoundError:
		return "absent", None
	except IsADirectoryError:
		return "unreadable", "a directory, not a key"
	except (OSError, UnicodeDecodeError) as e:
		return "unreadable", getattr(e, "strerror", None) or str(e)


def format_table(rows):
	"""rows of equal-length string tuples, left-aligned in columns two
	spaces apart (the last column unpadded)."""
	widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
	out = []
	for r in rows:
		cells = [c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]
		out.append("  ".join(cells))
	return "\n".join(out)
