package store

// ConvFile is one file of an agent's saved conversation (the claude
// agent's transcript and the files beside it), as the database has it:
// its path relative to the chat's conversation folder, its size and the
// SHA-256 of its content.
type ConvFile struct {
	Path string
	Size int64
	Hash []byte
}

// ConvChange is what one save changes in one file: Data is written at
// Offset (an append to the saved content), or, with Replace, is the
// file's whole new content. Size and Hash describe the file after it.
type ConvChange struct {
	Path    string
	Offset  int64
	Data    []byte
	Replace bool
	Size    int64
	Hash    []byte
}
