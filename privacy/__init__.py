"""A customer's rights under PIPL (个人信息保护法) and how long each kind of data is kept.

``export``: everything held about one customer as one ZIP with a readable index;
``erasure``: the customer scrubbed and their files deleted, counts kept, the act audited;
``files``: the files of a visit (deleting a visit deletes them); ``retention``: each kind
of data kept for the company's period and no longer, by a daily job.
"""
