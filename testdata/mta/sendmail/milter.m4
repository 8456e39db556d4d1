dnl Milter macros of the private Sendmail in internal/mtatest: the macros
dnl backscatter-milter reads, per stage. docs/sendmail.md quotes this file.
dnl Lists with commas need double quotes. {client_addr} and {client_name}:
dnl who connected; {daemon_name}: which daemon (its Name= option) took the
dnl mail; {i}: queue ID; {auth_authen}: SASL login name, meaning outbound
dnl mail. Sendmail ignores a milter's own end-of-message macro request
dnl unless it also requests end-of-headers macros, so both lists are set.
define(`confMILTER_MACROS_CONNECT', ``j, _, {daemon_name}, {if_name}, {if_addr}, {client_addr}, {client_name}, {client_port}'')dnl
define(`confMILTER_MACROS_HELO', ``{tls_version}, {cipher}, {cipher_bits}, {cert_subject}, {cert_issuer}'')dnl
define(`confMILTER_MACROS_ENVFROM', ``i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}'')dnl
define(`confMILTER_MACROS_ENVRCPT', ``i, {rcpt_mailer}, {rcpt_host}, {rcpt_addr}'')dnl
define(`confMILTER_MACROS_EOH', ``i'')dnl
define(`confMILTER_MACROS_EOM', ``i, {msg_id}'')dnl
