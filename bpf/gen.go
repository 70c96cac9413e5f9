// Package bpf holds kubedirect's eBPF programs (one C file per attach point,
// shared helpers in lib/) and their bpf2go-generated Go bindings. The
// generated *_bpfel.go and *_bpfel.o files are committed, so building needs
// no clang; regenerating (`go generate ./bpf`) needs clang, llvm and
// libbpf-dev (Debian: clang llvm libbpf-dev linux-libc-dev).
package bpf

//go:generate go tool bpf2go -go-package bpf -no-global-types -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" Container kd_container.c
//go:generate go tool bpf2go -go-package bpf -no-global-types -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" Netdev kd_netdev.c
//go:generate go tool bpf2go -go-package bpf -no-global-types -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" Overlay kd_overlay.c
//go:generate go tool bpf2go -go-package bpf -no-global-types -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" Sock kd_sock.c
//go:generate go tool bpf2go -go-package bpf -no-global-types -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" Types kd_types.c
//go:generate go tool bpf2go -go-package bpf -no-global-types -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" Xdp kd_xdp.c
