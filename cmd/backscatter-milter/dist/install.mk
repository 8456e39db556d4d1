# make install / make uninstall for backscatter-milter: included by the
# top-level Makefile (include cmd/backscatter-milter/dist/install.mk), which
# defines BIN and the build target. install copies what `make build` built:
# it never compiles, so it runs under sudo, whose PATH has no Go. DESTDIR
# stages into a package root and then skips the system setup (user, group,
# directories) and systemctl. On Debian, prefer `make deb`.
#
#   make build && sudo make install    binary, unit, config, docs, completion; user, directories
#   make install DESTDIR=/tmp/pkg      staged, for packaging
#   sudo make uninstall                removes binary, unit and docs; keeps config, state and user

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
TMPFILESDIR ?= /etc/tmpfiles.d
LOGROTATEDIR ?= /etc/logrotate.d
DOCDIR     ?= $(PREFIX)/share/doc/backscatter-milter
MANDIR     ?= $(PREFIX)/share/man
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
DIST       := cmd/backscatter-milter/dist

.PHONY: install uninstall

install:
	@test -x $(BIN) || { echo "make install: $(BIN) is missing: run 'make build' first (as yourself; install does not need Go)"; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(LOGROTATEDIR) $(DESTDIR)$(COMPLETIONDIR)
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/backscatter-milter
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/backscatter-milter
	sed 's|/usr/local/bin/backscatter-milter|$(BINDIR)/backscatter-milter|g; s|/etc/backscatter-milter/|$(SYSCONFDIR)/backscatter-milter/|g; s|/usr/local/share/doc/backscatter-milter|$(DOCDIR)|g' \
	  $(DIST)/backscatter-milter.service > $(DESTDIR)$(UNITDIR)/backscatter-milter.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/backscatter-milter.service
	install -m 0644 $(DIST)/backscatter-milter.tmpfiles $(DESTDIR)$(TMPFILESDIR)/backscatter-milter.conf
	install -m 0644 $(DIST)/backscatter-milter.logrotate $(DESTDIR)$(LOGROTATEDIR)/backscatter-milter
	install -m 0644 $(DIST)/backscatter-milter.bash-completion $(DESTDIR)$(COMPLETIONDIR)/backscatter-milter
	install -m 0644 $(DIST)/config.example.yaml $(DESTDIR)$(SYSCONFDIR)/backscatter-milter/config.example.yaml
	@# The live configuration is never overwritten: an upgrade keeps yours.
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/backscatter-milter/config.yaml ]; then \
	  install -m 0640 $(DIST)/config.example.yaml $(DESTDIR)$(SYSCONFDIR)/backscatter-milter/config.yaml; \
	  echo "installed $(SYSCONFDIR)/backscatter-milter/config.yaml (observe mode): edit local_domains and relays"; \
	else echo "kept existing $(SYSCONFDIR)/backscatter-milter/config.yaml"; fi
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	@# Man pages when `make man` made them (it needs go-md2man).
	@if [ -f $(MAN_OUT)/backscatter-milter.8 ]; then \
	  install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5; \
	  install -m 0644 $(MAN_OUT)/backscatter-milter.8 $(DESTDIR)$(MANDIR)/man8/; \
	  install -m 0644 $(MAN_OUT)/backscatter-milter.yaml.5 $(DESTDIR)$(MANDIR)/man5/; fi
	@if [ -z "$(DESTDIR)" ]; then \
	  sh $(DIST)/setup-system.sh $(TMPFILESDIR)/backscatter-milter.conf; \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "next: systemctl enable --now backscatter-milter; Postfix: smtpd_milters = unix:backscatter-milter/milter.sock (see $(DOCDIR)/postfix.md)"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/backscatter-milter $(DESTDIR)$(UNITDIR)/backscatter-milter.service \
	  $(DESTDIR)$(TMPFILESDIR)/backscatter-milter.conf $(DESTDIR)$(LOGROTATEDIR)/backscatter-milter \
	  $(DESTDIR)$(COMPLETIONDIR)/backscatter-milter $(DESTDIR)$(MANDIR)/man8/backscatter-milter.8 \
	  $(DESTDIR)$(MANDIR)/man5/backscatter-milter.yaml.5
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept $(SYSCONFDIR)/backscatter-milter, /var/lib/backscatter-milter, /var/log/backscatter-milter and the backscatter-milter user"
