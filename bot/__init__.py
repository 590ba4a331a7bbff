"""Transport, understanding and plumbing: everything between WeChat and the domain."""
