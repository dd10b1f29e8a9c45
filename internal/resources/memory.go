package resources

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// GroupRSS sums the resident memory, in bytes, of every live process in each
// of the given process groups — an agent leads its own group, so this is
// the agent with all its children (tool subprocesses, a browser it started).
// It reads /proc once: each process's stat line gives its group and its
// resident set (field 24, in pages), so a sample costs one small read per
// process on the machine, cheap enough to take every few seconds. Groups
// with no live process are absent from the result. Zombies hold no memory
// and are skipped. procRoot "" means /proc.
func GroupRSS(procRoot string, pgids map[int]bool) (map[int]uint64, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	out := make(map[int]uint64, len(pgids))
	if len(pgids) == 0 {
		return out, nil
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	page := uint64(os.Getpagesize())
	buf := make([]byte, 0, 1024)
	for _, e := range ents {
		name := e.Name()
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := readSmall(filepath.Join(procRoot, name, "stat"), buf)
		if err != nil {
			continue // gone meanwhile
		}
		pgid, pages, ok := statRSS(b)
		if !ok || !pgids[pgid] {
			continue
		}
		out[pgid] += pages * page
	}
	return out, nil
}

// statRSS reads the process group (field 5) and resident pages (field 24)
// from a /proc/<pid>/stat line; ok is false for a zombie or a line it
// cannot read.
func statRSS(b []byte) (pgid int, pages uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// after the name: state(3) ppid(4) pgrp(5) ... rss(24) → f[0], f[2], f[21]
	if len(f) < 22 || f[0] == "Z" || f[0] == "X" {
		return 0, 0, false
	}
	pgid, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	rss, err := strconv.ParseInt(f[21], 10, 64)
	if err != nil || rss < 0 {
		return 0, 0, false
	}
	return pgid, uint64(rss), true
}

func readSmall(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf = buf[:cap(buf)]
	n, err := f.Read(buf)
	if n == 0 && err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// MemTotal is the machine's memory in bytes, from /proc/meminfo (0 when it
// cannot be read). procRoot "" means /proc.
func MemTotal(procRoot string) uint64 {
	if procRoot == "" {
		procRoot = "/proc"
	}
	f, err := os.Open(filepath.Join(procRoot, "meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) == 0 {
			return 0
		}
		kb, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}
