//! DKIM for penguin-mta: the key store (keygen, DNS records) and the signer. Skeleton; filled by the
//! DKIM work of issue 6.
