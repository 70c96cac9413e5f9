package bpf_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// packet is a decoded (or to be encoded) Ethernet + IPv4 + TCP/UDP/ICMP packet.
type packet struct {
	DstMAC, SrcMAC   [6]byte
	Src, Dst         netip.Addr
	Proto            uint8
	TTL              uint8
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	TCPFlags         uint8
	ICMPType         uint8
	ICMPCode         uint8
	Payload          []byte
	// ID and FragOff are the IPv4 identification and flags+fragment offset words.
	ID, FragOff uint16
	// TCPOpts are TCP options (a multiple of 4 bytes).
	TCPOpts []byte
	// L4 is a raw L4 part used instead of Proto's header and Payload (non-first fragments).
	L4 []byte
}

const (
	ipDF = 0x4000
	ipMF = 0x2000
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func csum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = (sum & 0xffff) + sum>>16
	}
	return ^uint16(sum)
}

func pseudo(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	s, d := src.As4(), dst.As4()
	var b [12]byte
	copy(b[0:], s[:])
	copy(b[4:], d[:])
	b[9] = proto
	binary.BigEndian.PutUint16(b[10:], uint16(l4len))
	return csum(0, b[:])
}

// bytes encodes p with valid checksums.
func (p packet) bytes() []byte {
	var l4 []byte
	switch p.Proto {
	case 6:
		l4 = make([]byte, 20, 20+len(p.TCPOpts))
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		binary.BigEndian.PutUint32(l4[4:], p.Seq)
		binary.BigEndian.PutUint32(l4[8:], p.Ack)
		l4[12] = byte(5+len(p.TCPOpts)/4) << 4
		l4 = append(l4, p.TCPOpts...)
		l4[13] = p.TCPFlags
		binary.BigEndian.PutUint16(l4[14:], 65535)
		l4 = append(l4, p.Payload...)
		binary.BigEndian.PutUint16(l4[16:], fold(csum(pseudo(p.Src, p.Dst, 6, len(l4)), l4)))
	case 17:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		l4 = append(l4, p.Payload...)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		c := fold(csum(pseudo(p.Src, p.Dst, 17, len(l4)), l4))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case 1:
		l4 = []byte{p.ICMPType, p.ICMPCode, 0, 0, 0, 0, 0, 0}
		l4 = append(l4, p.Payload...)
		binary.BigEndian.PutUint16(l4[2:], fold(csum(0, l4)))
	default:
		l4 = append([]byte(nil), p.Payload...)
	}
	if p.L4 != nil {
		l4 = p.L4
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = 64
	}
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], p.ID)
	binary.BigEndian.PutUint16(ip[6:], p.FragOff)
	ip[8] = ttl
	ip[9] = p.Proto
	s, d := p.Src.As4(), p.Dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], fold(csum(0, ip)))
	out := make([]byte, 0, 14+len(ip)+len(l4))
	out = append(out, p.DstMAC[:]...)
	out = append(out, p.SrcMAC[:]...)
	out = append(out, 0x08, 0x00)
	out = append(out, ip...)
	return append(out, l4...)
}

// decode parses b (which may have trailing bytes beyond the IP total length)
// and verifies the IP and L4 checksums.
func decode(b []byte) (packet, error) {
	var p packet
	if len(b) < 34 {
		return p, fmt.Errorf("short packet: %d bytes", len(b))
	}
	copy(p.DstMAC[:], b[0:6])
	copy(p.SrcMAC[:], b[6:12])
	if b[12] != 0x08 || b[13] != 0 {
		return p, fmt.Errorf("not IPv4: ethertype %x", b[12:14])
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot > len(ip) || ihl < 20 || tot < ihl {
		return p, fmt.Errorf("bad IP lengths ihl=%d tot=%d have=%d", ihl, tot, len(ip))
	}
	if c := fold(csum(0, ip[:ihl])); c != 0 {
		return p, fmt.Errorf("bad IP checksum (residue %#x)", c)
	}
	p.TTL = ip[8]
	p.Proto = ip[9]
	p.Src = netip.AddrFrom4([4]byte(ip[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
	p.ID = binary.BigEndian.Uint16(ip[4:])
	p.FragOff = binary.BigEndian.Uint16(ip[6:])
	l4 := ip[ihl:tot]
	if p.FragOff&(ipMF|0x1fff) != 0 {
		// a fragment: its L4 checksum covers the whole datagram
		p.L4 = l4
		if p.FragOff&0x1fff == 0 && len(l4) >= 4 {
			p.SrcPort = binary.BigEndian.Uint16(l4[0:])
			p.DstPort = binary.BigEndian.Uint16(l4[2:])
		}
		return p, nil
	}
	switch p.Proto {
	case 6:
		if len(l4) < 20 {
			return p, fmt.Errorf("short TCP")
		}
		if c := fold(csum(pseudo(p.Src, p.Dst, 6, len(l4)), l4)); c != 0 {
			return p, fmt.Errorf("bad TCP checksum (residue %#x)", c)
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		p.Seq = binary.BigEndian.Uint32(l4[4:])
		p.Ack = binary.BigEndian.Uint32(l4[8:])
		p.TCPFlags = l4[13]
		if off := int(l4[12]>>4) * 4; off < 20 || off > len(l4) {
			return p, fmt.Errorf("bad TCP data offset %d", off)
		}
		p.TCPOpts = l4[20 : int(l4[12]>>4)*4]
		p.Payload = l4[int(l4[12]>>4)*4:]
	case 17:
		if len(l4) < 8 {
			return p, fmt.Errorf("short UDP")
		}
		if binary.BigEndian.Uint16(l4[6:]) != 0 {
			if c := fold(csum(pseudo(p.Src, p.Dst, 17, len(l4)), l4)); c != 0 {
				return p, fmt.Errorf("bad UDP checksum (residue %#x)", c)
			}
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.DstPort = binary.BigEndian.Uint16(l4[2:])
		p.Payload = l4[8:]
	case 1:
		if len(l4) < 8 {
			return p, fmt.Errorf("short ICMP")
		}
		if c := fold(csum(0, l4)); c != 0 {
			return p, fmt.Errorf("bad ICMP checksum (residue %#x)", c)
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		p.Payload = l4[8:]
	default:
		p.Payload = l4
	}
	return p, nil
}
