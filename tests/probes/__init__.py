"""The probes behind issue 15's findings, kept as bounded tests that run in CI: a poison
script in a batch of sends, a link scanner's HEAD/GET on e-mail score links, a stranger on
a delivery survey, cron expressions against crontab(5), a reminder in quiet hours. Each is
limited in loops and time and talks only to loopback."""
