"""TOML in the policy: `petreld --validate` on a policy that loads a
shaping.toml with kumo.toml_load accepts a good file and refuses a broken
one, naming the TOML file's line and column behind the policy's own line."""


import harness

GOOD = """["default"]
connection_limit = 10
max_message_rate = "100/s"

["example.com"]
mx_rollup = false
connection_limit = 1

[["example.com".automation]]
regex = "451 .*rate limited"
action = "Suspend"
duration = "90m"
"""

# Line 7, column 20: a bare word where a value must be.
BROKEN = """["default"]
connection_limit = 10

["example.com"]
mx_rollup = false

enable_tls = Required
"""


def loader_hook(path):
	"""Top-level policy code (after init) that loads path and checks what
	the good file holds, so a wrong parse fails validation too."""
	return """local kumo = require 'kumo'
local shaping = kumo.toml_load(%s)
assert(shaping.default.connection_limit == 10, 'default.connection_limit')
assert(shaping['example.com'].mx_rollup == false, 'mx_rollup')
assert(shaping['example.com'].automation[1].action == 'Suspend', 'automation')
""" % harness.lua_str(path)


class TomlValidate(harness.PetrelTest):
	def _validate(self, policy):
		return harness.validate(policy, self.env.dir)

	def test_good_toml_validates(self):
		toml = self.env.dir / "shaping.toml"
		toml.write_text(GOOD)
		policy = self.env.write_policy(message_hook=loader_hook(toml))
		rc, out = self._validate(policy)
		self.assertEqual(rc, 0, out)
		self.assertIn("%s: OK" % policy, out)

	def test_broken_toml_is_refused_with_position(self):
		toml = self.env.dir / "shaping.toml"
		toml.write_text(BROKEN)
		policy = self.env.write_policy(message_hook=loader_hook(toml))
		rc, out = self._validate(policy)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("%s:7:14: Error while parsing value" % toml, out)
		# The policy line that loaded it comes first.
		line = policy.read_text().splitlines().index(
			"local shaping = kumo.toml_load(%s)" % harness.lua_str(toml)) + 1
		self.assertIn("%s:%d: %s:7:14:" % (policy, line, toml), out)
		self.assertNotIn(": OK", out)

	def test_missing_toml_is_refused(self):
		missing = self.env.dir / "nope.toml"
		policy = self.env.write_policy(message_hook=loader_hook(missing))
		rc, out = self._validate(policy)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("toml_load: %s: No such file or directory" % missing, out)
