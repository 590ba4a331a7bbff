"""The look every H5 page shares (ticket, pay, seat picker, survey): one style sheet."""

STYLE = """
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f4f4f6;color:#222}
main{max-width:420px;margin:0 auto;padding:16px}
.card{background:#fff;border-radius:12px;padding:16px;margin-bottom:12px;box-shadow:0 1px 3px #0001}
h1{font-size:20px;margin:4px 0 8px}.muted{color:#888;font-size:13px}
.qr{display:block;margin:12px auto;width:220px;height:220px;image-rendering:pixelated}
.btn{display:block;width:100%;padding:14px;border:0;border-radius:10px;background:#07c160;color:#fff;
font-size:17px;margin-top:12px}.btn[disabled]{background:#bbb}
.state{display:inline-block;padding:2px 8px;border-radius:6px;background:#eef;font-size:13px}
.amount{font-size:28px;font-weight:600}
"""
