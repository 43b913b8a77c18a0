"""The newsletter (issue 15): a digest residents subscribe to, sent once to everyone, never twice.

    options.py    the channel's options (`renderer: newsletter`) and its SMTP server
    subscribe.py  the form, double opt-in, topics, leaving; limits and the honeypot
    tokens.py     the signed links in mails
    digest.py     which records an edition carries, which of them each subscriber gets
    render.py     the mail's HTML (CSS inlined) and text, put together from pieces
    mime.py       the message bytes and their headers (List-Unsubscribe, Message-ID, ...)
    smtp.py       aiosmtplib: one connection, a steady pace, answers classified
    sender.py     sending an edition: lease, batches, the ledger marks
    job.py        slots -> editions (`hub run`), `hub publish`, preview and dry run
    store.py      subscribers, editions and the per-recipient ledger in the store
    upkeep.py     forgetting unconfirmed sign-ups and old ledgers

The web pages are `hub.web.newsletter`, the commands `hub.cli.newsletter`.
"""
