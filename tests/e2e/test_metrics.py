"""Metrics text: Petrel's /metrics renderer, fed known values by
build/tests/tools/metrics-sample (the families petreld registers, written
through the calls the shards make), must parse with Python's
prometheus_client parser (Debian python3-prometheus-client) into exactly
the families, series and values the sample wrote, and hold the rules of
the text format 0.0.4 the parser does not check."""

import json
import re
import subprocess
import unittest

import harness

SHARDS = 3
QUEUES_MAX = 64	# SHARD_METRICS_QUEUES_MAX

# (family, type, label name, label value, aggregation) per scalar slot, in
# enum shard_metric order: slot k on shard i holds 1000 * k + i + 1.
SCALARS = [
	("total_messages_received", "counter", "service", "esmtp_listener", sum),
	("total_messages_received", "counter", "service", "http_listener", sum),
	("total_messages_delivered", "counter", "service", "smtp_client", sum),
	("total_messages_transfail", "counter", "service", "smtp_client", sum),
	("total_messages_fail", "counter", "service", "smtp_client", sum),
	("total_messages_rejected", "counter", "service", "esmtp_listener", sum),
	("total_messages_expired", "counter", None, None, sum),
	("total_connection_count", "counter", "service", "esmtp_listener", sum),
	("total_connection_count", "counter", "service", "smtp_client", sum),
	("total_connections_denied", "counter", "service", "esmtp_listener", sum),
	("connection_count", "gauge", "service", "esmtp_listener", sum),
	("connection_count", "gauge", "service", "smtp_client", sum),
	("scheduled_count_total", "gauge", None, None, sum),
	("ready_count", "gauge", "service", "smtp_client", sum),
	("spool_bytes", "gauge", None, None, sum),
	("spool_segments", "gauge", None, None, sum),
	("disk_free_bytes", "gauge", "name", "data", max),
	("disk_free_inodes", "gauge", "name", "data", max),
	("dns_cache_hit", "counter", None, None, sum),
	("dns_cache_miss", "counter", None, None, sum),
	("dns_queries_sent", "counter", None, None, sum),
	("dns_lookup_tempfail", "counter", None, None, sum),
	("log_hook_dropped", "counter", None, None, sum),
]
NOT_BY_SHARD = {"disk_free_bytes", "disk_free_inodes", "scheduled_count", "lua_event_latency"}
LUA_EVENTS = ["smtp_server_message_received", "get_listener_domain", "get_queue_config",
	      "get_egress_path_config", "get_egress_source", "get_egress_pool",
	      "http_message_generated", "http_server_validate_auth_basic",
	      "should_enqueue_log_record"]
BOUNDS = ["0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
	  "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
# Queue names as metrics_sample.c publishes them (value 500 each on every
# shard) and as they must come back after escaping: invalid UTF-8 bytes
# become U+FFFD, a name past 255 bytes is cut.
HOSTILE = {
	'tenant"quoted"@example.com': 'tenant"quoted"@example.com',
	"back\\slash@example.com": "back\\slash@example.com",
	"line\nfeed@example.com": "line\nfeed@example.com",
	"bad\xff\xfe@example.com": "bad\ufffd\ufffd@example.com",
	"café@example.com": "café@example.com",
	"x" * 299: "x" * 255,
}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^\n]*\})? (\S+)$')


def sample_text():
	path = harness.BUILD / "tests" / "tools" / "metrics-sample"
	if not path.exists():
		raise AssertionError("%s does not exist (build it with make all)" % path)
	p = subprocess.run([str(path)], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
	if p.returncode != 0:
		raise AssertionError("metrics-sample failed: %s" % p.stderr.decode(errors="replace"))
	return p.stdout.decode("utf-8")	# the format is UTF-8: this must not fail


def parse(text):
	try:
		from prometheus_client.parser import text_string_to_metric_families
	except ImportError:
		raise unittest.SkipTest(harness.MISSING_DEP + "python3-prometheus-client")
	return {f.name: f for f in text_string_to_metric_families(text)}


def values(family):
	"""{(sample name, frozenset of labels): value}"""
	out = {}
	for s in family.samples:
		key = (s.name, frozenset(s.labels.items()))
		assert key not in out, "duplicate sample %r" % (key,)
		out[key] = s.value
	return out


def key(sample, /, **labels):
	return (sample, frozenset(labels.items()))


def sample_name(name, kind):
	"""prometheus_client's parser names a counter's samples NAME_total (its
	model of a counter), whatever the text says."""
	return name + "_total" if kind == "counter" and not name.endswith("_total") else name


class MetricsText(unittest.TestCase):
	@classmethod
	def setUpClass(cls):
		cls.text = sample_text()
		cls.families = parse(cls.text)

	def test_families_and_types(self):
		want = {}
		for name, kind, _, _, _ in SCALARS:
			want[name] = kind
		want.update({"scheduled_count": "gauge", "spool_sync_latency": "histogram",
			     "lua_event_latency": "histogram"})
		for name in list(want):
			if name not in NOT_BY_SHARD:
				want[name + "_by_shard"] = want[name]
		got = {name: f.type for name, f in self.families.items()}
		self.assertEqual(got, want)
		harness.note("%d families, %d lines" % (len(got), self.text.count("\n")))

	def test_scalar_totals_and_shard_lines(self):
		for k, (name, kind, lname, lvalue, agg) in enumerate(SCALARS):
			per_shard = [1000 * k + i + 1 for i in range(SHARDS)]
			labels = {lname: lvalue} if lname else {}
			got = values(self.families[name])
			self.assertEqual(got[key(sample_name(name, kind), **labels)], agg(per_shard),
					 name)
			if name in NOT_BY_SHARD:
				continue
			by = values(self.families[name + "_by_shard"])
			for i in range(SHARDS):
				by_name = sample_name(name + "_by_shard", kind)
				self.assertEqual(by[key(by_name, shard=str(i), **labels)], per_shard[i],
						 "%s shard %d" % (name, i))

	def check_histogram(self, family, labels, counts, total_sum):
		"""counts: observations per finite bucket (not cumulative) and the
		overflow; the text must be cumulative, end in +Inf = _count."""
		got = values(self.families[family])
		cum = 0
		for bound, n in zip(BOUNDS, counts):
			cum += n
			self.assertEqual(got[key(family + "_bucket", le=bound, **labels)], cum,
					 "%s le=%s" % (family, bound))
		self.assertEqual(got[key(family + "_count", **labels)], cum)
		self.assertAlmostEqual(got[key(family + "_sum", **labels)], total_sum, places=6)

	def test_spool_sync_histogram(self):
		# Per shard i: 7 us + i ns (le 0.00001), 3 ms (le 0.005), 20 s (+Inf).
		counts = [0] * len(BOUNDS)
		counts[0], counts[BOUNDS.index("0.005")], counts[-1] = SHARDS, SHARDS, SHARDS
		total = sum(7e-6 + i * 1e-9 + 0.003 + 20 for i in range(SHARDS))
		self.check_histogram("spool_sync_latency", {}, counts, total)
		one = [0] * len(BOUNDS)
		one[0], one[BOUNDS.index("0.005")], one[-1] = 1, 1, 1
		for i in range(SHARDS):
			self.check_histogram("spool_sync_latency_by_shard", {"shard": str(i)}, one,
					     7e-6 + i * 1e-9 + 0.003 + 20)

	def test_lua_event_histograms(self):
		for j, event in enumerate(LUA_EVENTS):
			ms = (j + 1) / 1000.0
			counts = [0] * len(BOUNDS)
			counts[next(b for b, v in enumerate(BOUNDS) if float(v) >= ms)] = SHARDS
			self.check_histogram("lua_event_latency", {"event": event}, counts, SHARDS * ms)

	def test_queue_tables_keep_each_shards_largest_and_escape_labels(self):
		sched = values(self.families["scheduled_count"])
		want = {key("scheduled_count", queue="common"): 1000 * SHARDS}
		for sent, shown in HOSTILE.items():
			want[key("scheduled_count", queue=shown)] = 500 * SHARDS
		# 100 rows "bulk-N" = N per shard; 64 kept: common, the 6 above, bulk-43..99.
		for n in range(100 - (QUEUES_MAX - 1 - len(HOSTILE)), 100):
			want[key("scheduled_count", queue="bulk-%d" % n)] = n * SHARDS
		self.assertEqual(sched, want)
		ready = values(self.families["ready_count"])
		self.assertEqual(ready[key("ready_count",
					   service="smtp_client:unspecified->mx.example.com")],
				 sum(i + 1 for i in range(SHARDS)))
		conns = values(self.families["connection_count"])
		self.assertEqual(conns[key("connection_count",
					   service="smtp_client:unspecified->mx.example.com")], SHARDS)

	def test_monitoring_examples_use_only_rendered_metrics(self):
		"""examples/monitoring/: the Grafana dashboard is JSON and every
		metric it, the alert rules and the scrape config name is one the
		renderer writes."""
		names = {SAMPLE_RE.match(line).group(1) for line in self.text.split("\n")
			 if line and not line.startswith("#")}
		here = harness.REPO / "examples" / "monitoring"
		dash_text = (here / "grafana-dashboard.json").read_text()
		dash = json.loads(dash_text)
		exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
		alerts = (here / "petrel-alerts.yml").read_text()
		exprs += re.findall(r"expr: *\|?\n?(.*?)\n *for:", alerts, re.S)
		used = set(re.findall(r"label_values\((\w+)", dash_text))
		for e in exprs:
			used |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", e))
		self.assertGreater(len(exprs), 20)
		self.assertEqual(used - names, set())
		self.assertIn("metrics_path: /metrics", (here / "prometheus.yml").read_text())
		harness.note("%d queries name %d metrics" % (len(exprs), len(used)))

	def test_text_format_rules(self):
		"""What the parser forgives: one HELP and TYPE per family, before its
		samples; a family's samples together; every line well formed; the
		text ends with a line feed; escapes only \\\\, \\" and \\n."""
		self.assertTrue(self.text.endswith("\n"))
		seen, current = set(), None
		for line in self.text.split("\n")[:-1]:
			if line.startswith("# HELP "):
				name = line.split(" ")[2]
				self.assertNotIn(name, seen, "second HELP for " + name)
				seen.add(name)
				current = name
				continue
			if line.startswith("# TYPE "):
				self.assertEqual(line.split(" ")[2], current, line)
				continue
			m = SAMPLE_RE.match(line)
			self.assertIsNotNone(m, "bad line %r" % line)
			name = m.group(1)
			base = re.sub(r"_(bucket|sum|count)$", "", name)
			self.assertIn(current, (name, base), "sample %r outside its family" % line)
			for esc in re.findall(r"\\(.)", m.group(2) or ""):
				self.assertIn(esc, ('\\', '"', 'n'), line)
			float(m.group(3))


if __name__ == "__main__":
	unittest.main()
