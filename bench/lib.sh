# shellcheck shell=bash
# bench/lib.sh -- shell functions shared by bench/reception and, through
# bench/benchkit.py, bench/compare and bench/backlog (the private Postfix).
#
# Sourced, not run.  The caller sets, before using these:
#   BENCH      its name, the prefix of every message ("reception", "relay")
#   REPO       the repository root
#   PY         /usr/bin/python3
#
# Processes are only ever stopped by their pid.  A private Postfix instance
# lives entirely in one directory (config_directory DIR/etc, queue_directory
# DIR/queue, data_directory DIR/data, log file DIR/maillog): `postfix -c
# DIR/etc` only consults alternate_config_directories for the set-gid
# commands (postdrop, postqueue), which the benches never use, so nothing
# outside DIR is read or changed.  Its master's pid is kept in pf_master so
# that postfix_stop can make sure it is gone.

pf_dir=
pf_master=

# bench_port: print a free loopback port.
bench_port() {
	$PY "$REPO/bench/reception_load.py" port
}

# bench_wait PORT SECONDS: wait until an SMTP greeting comes from
# 127.0.0.1:PORT; fails after SECONDS.
bench_wait() {
	$PY "$REPO/bench/reception_load.py" wait --port "$1" --timeout "$2"
}

# bench_workdir: create and print a fresh bench directory.  /var/tmp, not
# /tmp: Petrel's spool and Postfix's queue must be on a real disk (the same
# one), never tmpfs.  Mode 755 so that Postfix's daemons (user postfix) reach
# the queue below it.
bench_workdir() {
	local d
	d=$(mktemp -d /var/tmp/petrel-bench.XXXXXX) || return 1
	chmod 755 "$d"
	echo "$d"
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "$BENCH: pid $pid still running after ${2}s, SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# postfix_config DIR PORT: write DIR/etc/main.cf and master.cf for a private
# instance whose smtpd listens on 127.0.0.1:PORT.  Mail for other domains
# goes out through the smtp transport; the caller appends what decides where
# (relayhost, defer_transports, ...) to DIR/etc/main.cf: Postfix takes the
# last setting of a parameter.
postfix_config() {
	local dir=$1 port=$2
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
	chown postfix:postfix "$dir/data"
	chmod 700 "$dir/data"
	cat >"$dir/etc/main.cf" <<EOF
# Private benchmark instance; see bench/lib.sh and bench/$BENCH.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.postfix.test
mydomain = postfix.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
EOF
	# No chroot (it would need copies of /etc files inside the queue), only
	# the services reception, delivery and deferral use, smtpd on a
	# loopback port.
	cat >"$dir/etc/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
}

# postfix_start DIR PORT: check and start the instance configured in DIR,
# wait (bounded) for its master pid and its smtpd greeting on PORT.  Sets
# pf_dir and pf_master.  Fails, with Postfix's log on stderr, if it does not
# come up.
postfix_start() {
	local dir=$1 port=$2 i
	# `postfix check` creates the queue directories with their owners;
	# Postfix prints to stderr only on a terminal, so its words are in the
	# maillog.
	if ! postfix -c "$dir/etc" check >/dev/null 2>&1; then
		echo "$BENCH: postfix check failed:" >&2
		cat "$dir/maillog" >&2 2>/dev/null || true
		return 1
	fi
	pf_dir=$dir
	postfix -c "$dir/etc" start >/dev/null 2>&1 || true
	for ((i = 0; i < 100; i++)); do
		[ -s "$dir/queue/pid/master.pid" ] && break
		sleep 0.1
	done
	pf_master=$(tr -d ' \n' <"$dir/queue/pid/master.pid" 2>/dev/null || true)
	if [ -z "$pf_master" ] || ! bench_wait "$port" 20; then
		echo "$BENCH: private postfix did not start:" >&2
		cat "$dir/maillog" >&2 2>/dev/null || true
		return 1
	fi
}

# postfix_stop: stop the instance postfix_start started (if any): `postfix
# stop`, up to 10 s for its master to exit, then `postfix abort` and SIGKILL
# to the master's pid.  Also when postfix_start was cut short (a signal)
# after `postfix start` but before it read the master's pid.
postfix_stop() {
	[ -n "$pf_dir" ] || return 0
	[ -n "$pf_master" ] ||
		pf_master=$(tr -d ' \n' <"$pf_dir/queue/pid/master.pid" 2>/dev/null || true)
	[ -n "$pf_master" ] || return 0
	postfix -c "$pf_dir/etc" stop >/dev/null 2>&1 || true
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pf_master" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pf_master" 2>/dev/null; then
		postfix -c "$pf_dir/etc" abort >/dev/null 2>&1 || true
		sleep 1
		kill -KILL "$pf_master" 2>/dev/null || true
	fi
	pf_master=
	pf_dir=
}

# postfix_queued DIR: print how many messages are in the instance's queue
# (incoming, active, deferred, hold).
postfix_queued() {
	find "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" "$1/queue/hold" \
		-type f 2>/dev/null | wc -l
}
