/* The one kfunc the handover program calls, behind a wrapper that Rust
 * can link to. rustc gives foreign declarations no debug info, so a kfunc
 * declared in Rust has no BTF and the loader cannot resolve it; declared
 * here, in the .ksyms section with its prototype, it has both. bpf-linker
 * inlines the wrapper, so the program calls the kfunc directly.
 *
 * The loader compares the prototype with the kernel's by BTF kind, so each
 * struct needs a body (its members are not compared). */

struct __sk_buff {
	int unused;
};

struct sock {
	int unused;
};

/* As in the kernel (include/net/tcp.h): 20 bytes. */
struct bpf_tcp_req_attrs {
	unsigned int rcv_tsval;
	unsigned int rcv_tsecr;
	unsigned short mss;
	unsigned char rcv_wscale;
	unsigned char snd_wscale;
	unsigned char ecn_ok;
	unsigned char wscale_ok;
	unsigned char sack_ok;
	unsigned char tstamp_ok;
	unsigned char usec_ts_ok;
	unsigned char reserved[3];
};

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
				   struct bpf_tcp_req_attrs *attrs,
				   int attrs__sz) __attribute__((section(".ksyms")));

int filter_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
			    struct bpf_tcp_req_attrs *attrs, int attrs__sz)
{
	return bpf_sk_assign_tcp_reqsk(skb, sk, attrs, attrs__sz);
}
