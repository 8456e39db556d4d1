# make install / make uninstall for backscatter-milter: included by the
# top-level Makefile (include cmd/backscatter-milter/dist/install.mk), which
# defines BIN and the build target. DESTDIR stages into a package root and
# then skips the user creation and systemctl steps.
#
#   sudo make install                  binary, unit, config, docs; creates the user
#   make install DESTDIR=/tmp/pkg      staged, for packaging
#   sudo make uninstall                removes binary, unit and docs; keeps config and state

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/backscatter-milter
SERVICE_USER ?= backscatter-milter
DIST       := cmd/backscatter-milter/dist

.PHONY: install uninstall

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/backscatter-milter
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/backscatter-milter
	sed 's|/usr/local/bin/backscatter-milter|$(BINDIR)/backscatter-milter|g; s|/etc/backscatter-milter/|$(SYSCONFDIR)/backscatter-milter/|g; s|/usr/local/share/doc/backscatter-milter|$(DOCDIR)|g' \
	  $(DIST)/backscatter-milter.service > $(DESTDIR)$(UNITDIR)/backscatter-milter.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/backscatter-milter.service
	install -m 0644 $(DIST)/config.example.yaml $(DESTDIR)$(SYSCONFDIR)/backscatter-milter/config.example.yaml
	@# The live configuration is never overwritten: an upgrade keeps yours.
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/backscatter-milter/config.yaml ]; then \
	  install -m 0640 $(DIST)/config.example.yaml $(DESTDIR)$(SYSCONFDIR)/backscatter-milter/config.yaml; \
	  echo "installed $(SYSCONFDIR)/backscatter-milter/config.yaml (observe mode): edit local_domains and relays"; \
	else echo "kept existing $(SYSCONFDIR)/backscatter-milter/config.yaml"; fi
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/ 2>/dev/null || true
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/
	@if [ -z "$(DESTDIR)" ]; then \
	  if ! getent passwd $(SERVICE_USER) >/dev/null; then \
	    useradd --system --user-group --home-dir /var/lib/backscatter-milter --no-create-home \
	      --shell /usr/sbin/nologin --comment "backscatter-milter" $(SERVICE_USER); fi; \
	  chgrp $(SERVICE_USER) $(SYSCONFDIR)/backscatter-milter $(SYSCONFDIR)/backscatter-milter/config.yaml; \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "next: systemctl enable --now backscatter-milter (see $(DOCDIR)/operations.md)"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/backscatter-milter $(DESTDIR)$(UNITDIR)/backscatter-milter.service
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept $(SYSCONFDIR)/backscatter-milter, /var/lib/backscatter-milter and the $(SERVICE_USER) user"
