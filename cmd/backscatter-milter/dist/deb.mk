# make deb / make man: the Debian package, built with dpkg-deb (part of dpkg,
# so on every Debian machine), and the man pages, made from Markdown in docs/
# with Debian's go-md2man. Included by the top-level Makefile, which defines
# BIN and the build target.
#
#   make deb                         bin/backscatter-milter_VERSION_ARCH.deb
#   make deb DEB_VERSION=1.2.3-1     another version
#   make man                         bin/man/backscatter-milter.8, .yaml.5
#
# What goes where is described in docs/operations.md ("Debian package").

DEB_ARCH       ?= $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
# A tag such as v1.2.3-4-gabcdef gives 1.2.3+4.gabcdef; without a tag the
# commit date orders snapshots: 0~git20261201141500.abcdef0.
DEB_TAGGED     := $(shell echo '$(VERSION)' | sed -n 's/^v\{0,1\}\([0-9][0-9]*\.[0-9.]*\)\(.*\)$$/\1\2/p' | sed 's/-/+/; s/-/./g')
DEB_VERSION    ?= $(or $(DEB_TAGGED),0~git$(shell git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0).$(COMMIT))
DEB_MAINTAINER ?= backscatter-milter maintainers <backscatter-milter@users.noreply.github.com>
# The packaged binary is built on its own, hardened the way Debian builds its
# Go packages (position-independent, read-only relocations bound at start).
DEB_BIN        ?= $(DEB_BUILD).bin/backscatter-milter
DEB_LDFLAGS     = $(LDFLAGS) -linkmode=external -extldflags '-Wl,-z,relro,-z,now'
DEB_OUT        ?= bin
DEB_BUILD      ?= bin/deb
DEB_FILE        = $(DEB_OUT)/backscatter-milter_$(DEB_VERSION)_$(DEB_ARCH).deb
MAN_OUT        ?= bin/man
MD2MAN         ?= go-md2man

.PHONY: deb man

man:
	@command -v $(MD2MAN) >/dev/null || { echo "make man: $(MD2MAN) not found: apt-get install go-md2man"; exit 1; }
	install -d $(MAN_OUT)
	$(MD2MAN) -in docs/man/backscatter-milter.8.md -out $(MAN_OUT)/backscatter-milter.8
	@# backscatter-milter.yaml(5) is docs/configuration.md under a man-page head.
	cat docs/man/backscatter-milter.yaml.5.md docs/configuration.md | $(MD2MAN) -out $(MAN_OUT)/backscatter-milter.yaml.5

deb: man
	@command -v dpkg-deb >/dev/null || { echo "make deb: dpkg-deb not found (a Debian system has it)"; exit 1; }
	rm -rf $(DEB_BUILD) $(dir $(DEB_BIN))
	$(GO) build -trimpath -buildmode=pie -ldflags "$(DEB_LDFLAGS)" -o $(DEB_BIN) ./cmd/backscatter-milter
	install -d $(DEB_BUILD)/DEBIAN $(DEB_BUILD)/usr/sbin $(DEB_BUILD)/lib/systemd/system \
	  $(DEB_BUILD)/usr/lib/tmpfiles.d $(DEB_BUILD)/etc/backscatter-milter $(DEB_BUILD)/etc/logrotate.d \
	  $(DEB_BUILD)/usr/share/backscatter-milter $(DEB_BUILD)/usr/share/bash-completion/completions \
	  $(DEB_BUILD)/usr/share/man/man8 $(DEB_BUILD)/usr/share/man/man5 $(DEB_BUILD)/usr/share/doc/backscatter-milter
	install -m 0755 $(DEB_BIN) $(DEB_BUILD)/usr/sbin/backscatter-milter
	sed 's|/usr/local/bin/backscatter-milter|/usr/sbin/backscatter-milter|g; s|/usr/local/share/doc/backscatter-milter|/usr/share/doc/backscatter-milter|g' \
	  $(DIST)/backscatter-milter.service > $(DEB_BUILD)/lib/systemd/system/backscatter-milter.service
	install -m 0644 $(DIST)/backscatter-milter.tmpfiles $(DEB_BUILD)/usr/lib/tmpfiles.d/backscatter-milter.conf
	install -m 0644 $(DIST)/config.example.yaml $(DEB_BUILD)/etc/backscatter-milter/config.yaml
	install -m 0644 $(DIST)/backscatter-milter.logrotate $(DEB_BUILD)/etc/logrotate.d/backscatter-milter
	install -m 0755 $(DIST)/setup-system.sh $(DEB_BUILD)/usr/share/backscatter-milter/setup-system.sh
	install -m 0644 $(DIST)/backscatter-milter.bash-completion $(DEB_BUILD)/usr/share/bash-completion/completions/backscatter-milter
	gzip -9n -c $(MAN_OUT)/backscatter-milter.8 > $(DEB_BUILD)/usr/share/man/man8/backscatter-milter.8.gz
	gzip -9n -c $(MAN_OUT)/backscatter-milter.yaml.5 > $(DEB_BUILD)/usr/share/man/man5/backscatter-milter.yaml.5.gz
	install -m 0644 README.md docs/*.md $(DEB_BUILD)/usr/share/doc/backscatter-milter/
	GO=$(GO) sh $(DIST)/debian/copyright.sh $(DEB_BIN) > $(DEB_BUILD)/usr/share/doc/backscatter-milter/copyright
	@# A snapshot's changelog entry names its commit; dated by the commit, so
	@# that two builds of one commit are the same.
	{ echo 'backscatter-milter ($(DEB_VERSION)) unstable; urgency=medium'; echo; \
	  echo '  * Built from commit $(COMMIT).'; echo; \
	  echo ' -- $(DEB_MAINTAINER)  '"$$(git log -1 --format=%aD 2>/dev/null || date -R)"; } \
	  | gzip -9n > $(DEB_BUILD)/usr/share/doc/backscatter-milter/changelog.gz
	install -m 0755 $(DIST)/debian/postinst $(DIST)/debian/prerm $(DIST)/debian/postrm $(DEB_BUILD)/DEBIAN/
	@# Every file under /etc is a conffile: dpkg keeps an edited one on upgrade.
	cd $(DEB_BUILD) && find etc -type f | sed 's|^|/|' | sort > DEBIAN/conffiles
	cd $(DEB_BUILD) && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums
	@# The C library version the binary needs, as dpkg-shlibdeps (dpkg-dev)
	@# computes it; without dpkg-dev, an unversioned libc6.
	sed 's|@VERSION@|$(DEB_VERSION)|; s|@ARCH@|$(DEB_ARCH)|; s|@MAINTAINER@|$(DEB_MAINTAINER)|; s|@SIZE@|'"$$(du -sk --exclude=DEBIAN $(DEB_BUILD) | cut -f1)"'|; s|@SHLIBS@|'"$$(sh $(DIST)/debian/shlibs.sh $(DEB_BIN))"'|' \
	  $(DIST)/debian/control.in > $(DEB_BUILD)/DEBIAN/control
	install -d $(DEB_OUT)
	dpkg-deb --root-owner-group -Zxz --build $(DEB_BUILD) $(DEB_FILE)
	@echo "built $(DEB_FILE)"
