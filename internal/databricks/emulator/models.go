package emulator

import (
	"math"
	"sort"
	"strings"
	"unicode"
)

// span is a token's byte range in a text.
type span struct{ start, end int }

// isCJK reports whether r is written without spaces between words.
func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// tokenSpans splits text into model tokens, deterministically: a run of
// letters or digits is one token, every CJK character is one token, every
// other non-space character is one token.
func tokenSpans(text string) []span {
	var spans []span
	inWord := false
	for i, r := range text {
		switch {
		case isCJK(r):
			inWord = false
			spans = append(spans, span{i, i + len(string(r))})
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if inWord {
				spans[len(spans)-1].end = i + len(string(r))
			} else {
				spans = append(spans, span{i, i + len(string(r))})
				inWord = true
			}
		case unicode.IsSpace(r):
			inWord = false
		default:
			inWord = false
			spans = append(spans, span{i, i + len(string(r))})
		}
	}
	return spans
}

// countTokens is the usage count of a text.
func countTokens(text string) int { return len(tokenSpans(text)) }

// truncateTokens keeps the first max tokens of text.
func truncateTokens(text string, max int) (string, bool) {
	spans := tokenSpans(text)
	if len(spans) <= max {
		return text, false
	}
	return text[:spans[max-1].end], true
}

// splitPieces cuts text into streaming pieces, one token each with the
// whitespace that follows it; the pieces concatenate back to text.
func splitPieces(text string) []string {
	spans := tokenSpans(text)
	if len(spans) == 0 {
		if text == "" {
			return nil
		}
		return []string{text}
	}
	pieces := make([]string, 0, len(spans))
	for i, s := range spans {
		start := s.start
		if i == 0 {
			start = 0
		}
		end := len(text)
		if i+1 < len(spans) {
			end = spans[i+1].start
		}
		pieces = append(pieces, text[start:end])
	}
	return pieces
}

// sentence is one sentence of a text and its position.
type sentence struct {
	text  string
	index int
	terms []string
	score float64
}

// splitSentences cuts text at sentence-final punctuation (. ! ? followed by
// space or end; 。！？ anywhere) and at line breaks.
func splitSentences(text string) []string {
	var out []string
	runes := []rune(text)
	start := 0
	emit := func(end int) {
		if s := strings.TrimSpace(string(runes[start:end])); s != "" {
			out = append(out, s)
		}
		start = end
	}
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case r == '\n':
			emit(i + 1)
		case r == '。' || r == '！' || r == '？':
			j := i + 1
			for j < len(runes) && strings.ContainsRune("」』）)\"'", runes[j]) {
				j++
			}
			emit(j)
			i = j - 1
		case r == '.' || r == '!' || r == '?':
			j := i + 1
			for j < len(runes) && strings.ContainsRune(".!?\"')]", runes[j]) {
				j++
			}
			if j == len(runes) || unicode.IsSpace(runes[j]) {
				emit(j)
				i = j - 1
			}
		}
	}
	emit(len(runes))
	return out
}

// stopwords are frequent English words that carry no topic.
const stopwords = " a about above after again against all also am an and any are as at be because been before being below between both but by can could did do does doing down during each few for from further had has have having he her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other our ours ourselves out over own same she should so some such than that the their theirs them themselves then there these they this those through to too under until up very was we were what when where which while who whom why will with would you your yours yourself yourselves "

// terms returns the content terms of a sentence: lower-case words of two or
// more characters that are not stopwords, and bigrams of kanji/katakana runs.
func terms(s string) []string {
	var out []string
	var run []rune
	flush := func() {
		for i := 0; i+1 < len(run); i++ {
			out = append(out, string(run[i:i+2]))
		}
		if len(run) == 1 && unicode.Is(unicode.Han, run[0]) {
			out = append(out, string(run))
		}
		run = run[:0]
	}
	for _, sp := range tokenSpans(s) {
		tok := s[sp.start:sp.end]
		r := []rune(tok)
		if len(r) == 1 && isCJK(r[0]) {
			if unicode.In(r[0], unicode.Han, unicode.Katakana) {
				run = append(run, r[0])
			} else {
				flush()
			}
			continue
		}
		flush()
		w := strings.ToLower(tok)
		if len([]rune(w)) < 2 || strings.Contains(stopwords, " "+w+" ") {
			continue
		}
		if !unicode.IsLetter(r[0]) {
			continue
		}
		out = append(out, w)
	}
	flush()
	return out
}

// Summarize returns a short extractive summary of text: its highest-scoring
// sentences (by the normalised frequency of their content terms, with a
// small bonus for the opening sentence), in their original order. One
// sentence for up to three, two for up to eight, three beyond that. It is
// deterministic.
func Summarize(text string) string {
	raw := splitSentences(text)
	if len(raw) <= 1 {
		return strings.TrimSpace(text)
	}
	sentences := make([]*sentence, len(raw))
	freq := map[string]int{}
	for i, s := range raw {
		sentences[i] = &sentence{text: s, index: i, terms: terms(s)}
		for _, t := range sentences[i].terms {
			freq[t]++
		}
	}
	maxFreq := 1
	for _, f := range freq {
		maxFreq = max(maxFreq, f)
	}
	for _, s := range sentences {
		if len(s.terms) == 0 {
			continue
		}
		var sum float64
		for _, t := range s.terms {
			sum += float64(freq[t]) / float64(maxFreq)
		}
		s.score = sum / math.Sqrt(float64(len(s.terms)))
		if s.index == 0 {
			s.score *= 1.1
		}
	}
	k := 3
	switch {
	case len(sentences) <= 3:
		k = 1
	case len(sentences) <= 8:
		k = 2
	}
	ranked := append([]*sentence(nil), sentences...)
	sort.SliceStable(ranked, func(i, j int) bool { return ranked[i].score > ranked[j].score })
	chosen := ranked[:k]
	sort.Slice(chosen, func(i, j int) bool { return chosen[i].index < chosen[j].index })
	sep := " "
	for _, r := range text {
		if isCJK(r) {
			sep = ""
			break
		}
	}
	parts := make([]string, len(chosen))
	for i, s := range chosen {
		parts[i] = s.text
	}
	return strings.Join(parts, sep)
}
